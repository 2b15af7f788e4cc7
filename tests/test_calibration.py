import numpy as np
import pytest

from agegender.calibration import (age_intervals, distribution_intervals, fit_age_intervals,
                                   fit_distribution_widening, fit_gender_temperature, gender_reliability,
                                   own_intervals, scale_gender)
from agegender.pipeline import age_distribution_targets


def test_age_intervals_cover_the_asked_share_per_bracket():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 90, 20_000)
    predicted = true + rng.normal(0, np.where(true < 20, 2.0, 8.0))  # young faces: narrower errors
    table = fit_age_intervals(predicted[:10_000], true[:10_000], level=0.8)
    low, high = age_intervals(predicted[10_000:], table)
    inside = (true[10_000:] >= low) & (true[10_000:] <= high)
    assert inside.mean() == pytest.approx(0.8, abs=0.02)
    assert table["high"][0] - table["low"][0] < table["high"][3] - table["low"][3]
    assert (low >= 0).all()


def test_an_overconfident_distribution_is_widened_to_the_asked_share_and_stays_adaptive():
    rng = np.random.default_rng(0)
    true = rng.uniform(1, 80, 6_000)
    spread = np.where(true < 20, 2.0, 6.0)  # the real error grows with age
    centre = true + rng.normal(0, spread)
    ages = np.arange(101)
    # the model knows where it is less sure, but says half the real spread: its own 80% holds too few ages
    distribution = np.exp(-0.5 * ((ages[None, :] - centre[:, None]) / (spread[:, None] / 2)) ** 2)
    distribution /= distribution.sum(axis=1, keepdims=True)
    own_low, own_high = distribution_intervals(distribution[3_000:])
    assert ((true[3_000:] >= own_low) & (true[3_000:] <= own_high)).mean() < 0.6

    table = fit_distribution_widening(centre[:3_000], distribution[:3_000], true[:3_000], level=0.8)
    assert all(years > 0 for years in table["widen_distribution"])
    low, high = age_intervals(centre[3_000:], table, distribution[3_000:])
    inside = (true[3_000:] >= low) & (true[3_000:] <= high)
    assert inside.mean() == pytest.approx(0.8, abs=0.03)
    young = true[3_000:] < 15
    assert (high - low)[young].mean() < (high - low)[~young].mean()  # still narrower where the model is surer
    with pytest.raises(ValueError, match="did not output"):
        age_intervals(centre, table)


def test_an_interval_beside_a_regression_age_always_holds_that_age():
    distribution = age_distribution_targets(np.array([30.0, 30.0, 30.0]), sigma=5.0)  # own 80%: 24-36
    low, high = own_intervals(np.array([30.0, 20.0, 41.5]), distribution)
    assert low.tolist() == [24, 20, 24] and high.tolist() == [36, 36, 41.5]
    rng = np.random.default_rng(0)
    predicted = rng.uniform(20, 60, 400)
    distribution = age_distribution_targets(np.round(predicted + 8), sigma=3.0)  # centred 8 years off the age
    table = fit_distribution_widening(predicted, distribution, predicted + rng.normal(0, 3, 400))
    low, high = age_intervals(predicted, table, distribution)
    assert (low <= predicted).all() and (predicted <= high).all()


def test_too_few_calibration_faces_is_an_error():
    with pytest.raises(ValueError, match="at least 30"):
        fit_age_intervals(np.arange(10.0), np.arange(10.0))


def test_a_bracket_without_faces_uses_all_errors():
    predicted = np.linspace(25, 35, 100)
    table = fit_age_intervals(predicted, predicted + np.linspace(-5, 5, 100))
    assert table["faces"] == [0, 0, 100, 0, 0] and len(set(table["low"])) == 1


def test_gender_reliability_of_a_perfectly_calibrated_model_is_near_zero():
    rng = np.random.default_rng(1)
    female = rng.uniform(0, 1, 50_000)
    gender = (rng.uniform(0, 1, 50_000) < female).astype(int)
    result = gender_reliability(female, gender)
    assert result["expected_calibration_error"] < 0.01 and len(result["bins"]) == 10
    overconfident = gender_reliability(np.where(female >= 0.5, 0.99, 0.01), gender)
    assert overconfident["expected_calibration_error"] > 0.2


def test_distribution_intervals_are_its_central_percentiles():
    targets = age_distribution_targets(np.array([30.0, 0.0]), sigma=5.0)
    assert np.allclose(targets.sum(axis=1), 1) and targets[0].argmax() == 30 and targets[1].argmax() == 0
    low, high = distribution_intervals(targets, level=0.8)
    assert (low[0], high[0]) == (24, 36)  # 30 -+ 1.28 sigma, in whole years
    assert (low[1], high[1]) == (0, 8)  # a half Gaussian at 0: its 90th percentile is 1.645 sigma


def test_temperature_scaling_undoes_overconfidence_without_changing_the_named_gender():
    rng = np.random.default_rng(0)
    logit = rng.normal(0, 3, 20000)
    gender = (rng.random(20000) < 1 / (1 + np.exp(-logit / 2))).astype(int)  # the truth is twice as unsure
    overconfident = 1 / (1 + np.exp(-logit))
    temperature = fit_gender_temperature(overconfident, gender)
    assert temperature == pytest.approx(2.0, abs=0.15)
    scaled = scale_gender(overconfident, temperature)
    assert ((scaled >= 0.5) == (overconfident >= 0.5)).all()
    before = gender_reliability(overconfident, gender)["expected_calibration_error"]
    after = gender_reliability(scaled, gender)["expected_calibration_error"]
    assert after < 0.02 < before
    assert fit_gender_temperature(1 / (1 + np.exp(-logit / 2)), gender) == pytest.approx(1.0, abs=0.1)
