"""Uncertainty: calibrated age intervals and how well gender probabilities match outcomes.

Age intervals are split-conformal: on a calibration split (never the test split), the errors of the
model (true age - predicted age) are collected per predicted-age bracket, and their 10th and 90th
percentiles become the interval's offsets. A model that regresses age with MSE gives no distribution of its
own; these offsets are measured, so that "80% interval" means 80% of real faces, per age range. A model
that predicts an age distribution has its own interval (the distribution's central 80%, stretched to hold
the predicted age), which widens where the model is unsure; it is kept and only widened or narrowed by a
measured number of years per bracket, so that it too holds 80% of the calibration faces (conformalized
quantile regression, Romano et al. 2019).

Gender probabilities are recalibrated by temperature scaling (Guo et al., 2017): one number T, fitted on the
same calibration split, divides the gender logit. It fixes a network's over- or under-confidence without
changing which gender it names.
"""
from __future__ import annotations

import numpy as np

EDGES = (10.0, 20.0, 40.0, 60.0)  # predicted-age brackets: 0-9, 10-19, 20-39, 40-59, 60+ (as in evaluation)
MIN_PER_BRACKET = 30  # fewer calibration faces than this in a bracket: use the offsets of all faces


def _quantiles_per_bracket(predicted: np.ndarray, values: np.ndarray, quantiles: tuple[float, ...]
                           ) -> tuple[list[list[float]], list[int]]:
    """Each quantile of `values` per predicted-age bracket (all faces' where a bracket has too few), and the
    faces per bracket."""
    if len(predicted) < MIN_PER_BRACKET:
        raise ValueError(f"calibration needs at least {MIN_PER_BRACKET} labelled faces, got {len(predicted)}")
    brackets = np.digitize(predicted, EDGES)
    per_quantile, counts = [[] for _ in quantiles], []
    for bracket in range(len(EDGES) + 1):
        chosen = values[brackets == bracket]
        if len(chosen) < MIN_PER_BRACKET:
            chosen = values
        for column, quantile in zip(per_quantile, quantiles):
            column.append(round(float(np.quantile(chosen, quantile)), 3))
        counts.append(int((brackets == bracket).sum()))
    return per_quantile, counts


def fit_age_intervals(predicted: np.ndarray, true: np.ndarray, level: float = 0.8) -> dict:
    """Offsets per predicted-age bracket such that `level` of the calibration faces fall inside."""
    predicted, true = np.asarray(predicted, float), np.asarray(true, float)
    tail = (1 - level) / 2
    (low, high), counts = _quantiles_per_bracket(predicted, true - predicted, (tail, 1 - tail))
    return {"level": level, "edges": list(EDGES), "low": low, "high": high, "faces": counts}


def fit_distribution_widening(predicted: np.ndarray, distribution: np.ndarray, true: np.ndarray,
                               level: float = 0.8) -> dict:
    """Years by which to widen (or, if negative, narrow) the distribution's own interval per predicted-age
    bracket, such that `level` of the calibration faces fall inside."""
    predicted, true = np.asarray(predicted, float), np.asarray(true, float)
    low, high = own_intervals(predicted, distribution, level)
    outside = np.maximum(low - true, true - high)  # years outside the interval; negative when inside
    (widen,), counts = _quantiles_per_bracket(predicted, outside, (level,))
    return {"level": level, "edges": list(EDGES), "widen_distribution": widen, "faces": counts}


def age_intervals(predicted: np.ndarray, table: dict, distribution: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) ages for each prediction, from a table of `fit_age_intervals` (offsets around the
    prediction) or `fit_distribution_widening` (the distribution's interval, widened); never below 0."""
    predicted = np.asarray(predicted, float)
    brackets = np.digitize(predicted, table["edges"])
    if "widen_distribution" in table:
        if distribution is None:
            raise ValueError("this age interval widens the model's age distribution, which it did not output")
        low, high = own_intervals(predicted, distribution, table["level"])
        widen = np.asarray(table["widen_distribution"])[brackets]
        low, high = low - widen, high + widen
    else:
        low = predicted + np.asarray(table["low"])[brackets]
        high = predicted + np.asarray(table["high"])[brackets]
    return np.maximum(low, 0.0), np.maximum(high, 0.0)


def own_intervals(predicted: np.ndarray, distribution: np.ndarray, level: float = 0.8
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The distribution's central `level` interval, stretched to hold the predicted age: a regression age
    beside the distribution (age output "regression_with_distribution") may fall outside it."""
    low, high = distribution_intervals(distribution, level)
    predicted = np.asarray(predicted, float)
    return np.minimum(low, predicted), np.maximum(high, predicted)


def distribution_intervals(distribution: np.ndarray, level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """The central `level` interval (in whole years) of predicted age distributions over 0..N-1."""
    cumulative = np.cumsum(np.asarray(distribution, float), axis=1)
    cumulative /= cumulative[:, -1:]
    tail = (1 - level) / 2
    low = (cumulative < tail).sum(axis=1)
    high = (cumulative < 1 - tail).sum(axis=1)
    return low.astype(float), high.astype(float)


def fit_gender_temperature(female_probability: np.ndarray, gender: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of the true genders (1 = female)."""
    odds = logit(female_probability)
    sign = 2 * np.asarray(gender, float) - 1
    grid = np.round(np.arange(0.25, 4.0001, 0.01), 2)
    losses = [np.logaddexp(0.0, -sign * odds / temperature).mean() for temperature in grid]
    return float(grid[int(np.argmin(losses))])


def scale_gender(female_probability: np.ndarray, temperature: float) -> np.ndarray:
    """Female probabilities with their logit divided by `temperature`."""
    return (1 / (1 + np.exp(-logit(female_probability) / temperature))).astype(np.float32)


def logit(probability: np.ndarray) -> np.ndarray:
    probability = np.clip(np.asarray(probability, float), 1e-7, 1 - 1e-7)
    return np.log(probability) - np.log1p(-probability)


def gender_reliability(female_probability: np.ndarray, gender: np.ndarray, bins: int = 10) -> dict:
    """Reliability of the predicted gender's probability: per confidence bin, the mean confidence against the
    share correct, and the expected calibration error (their gap weighted by faces)."""
    female_probability, gender = np.asarray(female_probability, float), np.asarray(gender)
    confidence = np.maximum(female_probability, 1 - female_probability)
    correct = (female_probability >= 0.5).astype(int) == gender
    edges = np.linspace(0.5, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, gap = [], 0.0
    for b in range(bins):
        chosen = index == b
        if not chosen.any():
            continue
        mean_confidence, accuracy = float(confidence[chosen].mean()), float(correct[chosen].mean())
        rows.append({"confidence": f"{edges[b]:.2f}-{edges[b + 1]:.2f}", "n": int(chosen.sum()),
                     "mean_confidence": round(mean_confidence, 4), "accuracy": round(accuracy, 4)})
        gap += chosen.sum() * abs(mean_confidence - accuracy)
    return {"bins": rows, "expected_calibration_error": round(gap / len(confidence), 4)}
