"""How well would a model's calibrated 80% age interval hold on faces it was not calibrated on?

    python benchmarks/interval_coverage.py MODEL [MODEL ...] --data ../shared/datasets/utkface [--flip] [--repeats 20]

Only the holdout validation part is read (never the test part). Each model is calibrated as `agegender
calibrate` would (offsets per predicted-age bracket, or its own distribution's interval conformalized), but
cross-fitted: the validation groups are cut in two halves at random, each half gets the intervals fitted on
the other, and the share of true ages inside and the mean width are averaged over the repeats, overall, per
true-age bracket and per race. Coverage on the faces a calibration was fitted on is 80% by construction; this
says how it holds elsewhere, and where.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from agegender.calibration import age_intervals, fit_age_intervals, fit_distribution_widening
from agegender.data import RACES, age_bracket, protocol_split, read_dataset
from agegender.evaluate import evaluate_frame
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe


def cross_fitted_intervals(frame: pd.DataFrame, distribution, rng: np.random.Generator, level: float):
    groups = frame["group"].unique()
    half = frame["group"].isin(rng.permutation(groups)[: len(groups) // 2]).to_numpy()
    predicted, true = frame["predicted_age"].to_numpy(), frame["age"].to_numpy()
    low, high = np.empty_like(predicted), np.empty_like(predicted)
    for fitted_on, applied_to in ((half, ~half), (~half, half)):
        if distribution is None:
            table = fit_age_intervals(predicted[fitted_on], true[fitted_on], level)
            low[applied_to], high[applied_to] = age_intervals(predicted[applied_to], table)
        else:
            table = fit_distribution_widening(predicted[fitted_on], distribution[fitted_on], true[fitted_on], level)
            low[applied_to], high[applied_to] = age_intervals(predicted[applied_to], table, distribution[applied_to])
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--level", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    val = split[split["split"] == "val"]
    report = {}
    for path in args.models:
        model = AgeGenderModel(path, flip=args.flip)
        model.age_interval = None  # the network's own outputs, not a stored calibration
        frame, distribution = evaluate_frame(model, val, keep_distribution=True)
        rng = np.random.default_rng(0)
        inside, width = np.zeros(len(frame)), np.zeros(len(frame))
        for _ in range(args.repeats):
            low, high = cross_fitted_intervals(frame, distribution, rng, args.level)
            inside += frame["age"].between(low, high).to_numpy() / args.repeats
            width += (high - low) / args.repeats
        per = pd.DataFrame({"inside": inside, "width": width,
                            "bracket": frame["age"].map(age_bracket).to_numpy(),
                            "race": frame["race"].map(dict(enumerate(RACES))).to_numpy()})
        report[path] = {"faces": len(frame), "interval": "distribution" if distribution is not None else "offsets",
                        "inside": round(per["inside"].mean(), 3), "mean_width": round(per["width"].mean(), 2)}
        for column in ("bracket", "race"):
            report[path][f"inside_per_{column}"] = per.groupby(column)["inside"].mean().round(3).to_dict()
        print(json.dumps({path: report[path]}), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
