"""Would a linear recalibration of predicted ages (true ~ a * predicted + b) lower the MAE?

    python benchmarks/age_recalibration.py MODEL --data ../shared/datasets/utkface [--repeats 5]

Only the holdout validation part is read (never the test part). The map is cross-fitted: the validation
groups are cut in two halves at random, each half is corrected with the map fitted on the other, and the
MAE of the corrected ages is compared with the raw one, overall and per true-age bracket, for a
least-squares fit and a least-absolute-deviation fit (iteratively reweighted least squares).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from agegender.data import age_bracket, protocol_split, read_dataset
from agegender.evaluate import evaluate_frame
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe


def least_squares(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.polyfit(predicted, true, 1)


def least_absolute(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    coefficients = np.polyfit(predicted, true, 1)
    for _ in range(50):
        weights = 1 / np.maximum(np.abs(np.polyval(coefficients, predicted) - true), 0.5)
        coefficients = np.polyfit(predicted, true, 1, w=np.sqrt(weights))
    return coefficients


def cross_fitted(frame: pd.DataFrame, fit, rng: np.random.Generator) -> np.ndarray:
    groups = frame["group"].unique()
    half = frame["group"].isin(rng.permutation(groups)[: len(groups) // 2]).to_numpy()
    predicted, true = frame["predicted_age"].to_numpy(), frame["age"].to_numpy()
    corrected = np.empty_like(predicted)
    for fitted_on, applied_to in ((half, ~half), (~half, half)):
        coefficients = fit(predicted[fitted_on], true[fitted_on])
        corrected[applied_to] = np.maximum(np.polyval(coefficients, predicted[applied_to]), 0)
    return corrected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    frame = evaluate_frame(AgeGenderModel(args.model), split[split["split"] == "val"])
    bracket = frame["age"].map(age_bracket)
    raw = (frame["predicted_age"] - frame["age"]).abs()
    report = {"faces": len(frame), "raw": {"overall": round(raw.mean(), 3),
                                           **raw.groupby(bracket, observed=True).mean().round(3).to_dict()}}
    for name, fit in (("least_squares", least_squares), ("least_absolute", least_absolute)):
        rng = np.random.default_rng(0)
        errors = [np.abs(cross_fitted(frame, fit, rng) - frame["age"].to_numpy()) for _ in range(args.repeats)]
        error = pd.Series(np.mean(errors, axis=0), index=frame.index)
        report[name] = {"overall": round(error.mean(), 3),
                        **error.groupby(bracket, observed=True).mean().round(3).to_dict(),
                        "map_on_all": [round(float(c), 4) for c in fit(frame["predicted_age"].to_numpy(),
                                                                          frame["age"].to_numpy())]}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
