import pandas as pd
import pytest

from agegender.evaluate import breakdown, breakdown_markdown, history_summary


def test_breakdown_on_known_predictions():
    frame = pd.DataFrame({
        "age": [5, 8, 30, 70],
        "gender": [0, 1, 1, 0],
        "race": pd.array([0, 0, 2, pd.NA], dtype="Int64"),
        "predicted_age": [7.0, 8.0, 20.0, 60.0],
        "female_probability": [0.2, 0.3, 0.9, 0.6],
    })
    result = breakdown(frame)
    assert result["overall"] == {"n": 4, "gender_accuracy": 0.5, "age_mae": pytest.approx(5.5)}
    assert result["age_bracket"]["0-9"] == {"n": 2, "gender_accuracy": 0.5, "age_mae": 1.0}
    assert list(result["age_bracket"]) == ["0-9", "20-39", "60+"]
    assert result["gender"]["female"] == {"n": 2, "gender_accuracy": 0.5, "age_mae": 5.0}
    assert result["race"] == {"White": {"n": 2, "gender_accuracy": 0.5, "age_mae": 1.0},
                              "Asian": {"n": 1, "gender_accuracy": 1.0, "age_mae": 10.0}}
    assert result["worst"]["age_bracket"] == {"age_mae": "20-39", "gender_accuracy": "60+"}  # ties: the first
    assert result["worst"]["race"] == {"age_mae": "Asian", "gender_accuracy": "White"}
    # the intersections with gender: the 8-year-old girl read as a boy is the 0-9 bracket's only error
    assert result["age_bracket_gender"]["0-9 female"] == {"n": 1, "gender_accuracy": 0.0, "age_mae": 0.0}
    assert result["age_bracket_gender"]["0-9 male"] == {"n": 1, "gender_accuracy": 1.0, "age_mae": 2.0}
    assert list(result["race_gender"]) == ["White male", "White female", "Asian female"]  # no Asian man: no row
    assert result["worst"]["race_gender"] == {"age_mae": "Asian female", "gender_accuracy": "White female"}
    table = breakdown_markdown(result, "known")
    assert "| **overall** | 4 | 50.00% | 5.50 |" in table and "| race Asian | 1 | 100.00% | 10.00 |" in table
    assert "| race and gender Asian female | 1 | 100.00% | 10.00 |" in table
    assert "by age, **20-39** for age (MAE) and **60+** for gender" in table


def test_interval_coverage_per_group():
    frame = pd.DataFrame({"age": [5, 8, 30, 70], "gender": [0, 1, 1, 0], "predicted_age": [7.0, 8.0, 20.0, 60.0],
                          "female_probability": [0.2, 0.3, 0.9, 0.6], "age_low": [4.0, 9.0, 15.0, 55.0],
                          "age_high": [10.0, 12.0, 25.0, 70.0]})
    result = breakdown(frame)
    assert result["overall"]["age_interval_coverage"] == 0.5  # 8 is below 9; 30 above 25
    assert result["age_bracket"]["60+"]["age_interval_coverage"] == 1.0  # the upper end counts as inside
    assert "true age inside the 80% interval" in breakdown_markdown(result, "t")


def test_history_summary_reports_best_epochs_one_based():
    history = pd.DataFrame({"epoch": [0, 1, 2], "val_gender_accuracy": [0.6, 0.9, 0.8],
                            "val_age_mae": [9.0, 8.0, 7.0], "gender_accuracy": [0.5, 0.7, 0.9],
                            "age_mae": [10.0, 9.0, 8.0], "loss": [3.0, 2.0, 1.0], "val_loss": [3.0, 2.5, 2.6]})
    summary = history_summary(history)
    assert summary["best_val_gender_accuracy_epoch"] == 2 and summary["lowest_val_age_mae_epoch"] == 3
    assert summary["final"]["val_gender_accuracy"] == 0.8


def test_nothing_to_evaluate_is_an_error():
    with pytest.raises(ValueError, match="nothing to evaluate"):
        breakdown(pd.DataFrame(columns=["age", "gender", "predicted_age", "female_probability"]))
