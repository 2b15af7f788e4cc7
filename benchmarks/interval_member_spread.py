"""Would an averaged model's interval be better if it widened where its members disagree?

    python benchmarks/interval_member_spread.py MODEL --data ../shared/datasets/utkface [--offsets 2 4 8 12]

MODEL is an average of networks (agegender average), such as the shipped default. Its members are taken out
(agegender members) and run alone with the test-time flip on the holdout validation part (never the test
part); the pair's age is their mean, their spread the distance between their ages. Two 80% intervals are
cross-fitted as benchmarks/interval_coverage.py does (validation groups cut in two halves at random, each half
gets the interval fitted on the other, 20 repeats): the shipped one (offsets per predicted-age bracket), and
normalized conformal intervals (Papadopoulos et al. 2008; Lei et al. 2018) whose offsets are per year of
(spread + c), for each c given. For each: the share of true ages inside overall, per true-age bracket, per race
and per tercile of the spread (an interval that means what it says holds 80% in every tercile, as the spread
is what a user of the interval can see), and the mean and median widths.
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd

from agegender.calibration import age_intervals, fit_age_intervals
from agegender.data import RACES, age_bracket, protocol_split, read_dataset
from agegender.ensemble import extract_members
from agegender.evaluate import evaluate_frame
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe


def intervals(predicted, true, spread, fitted_on, applied_to, offset):
    """The 80% interval of the faces `applied_to`, fitted on those `fitted_on`; offset None: not scaled."""
    scale = np.ones_like(predicted) if offset is None else spread + offset
    # residuals per year of scale, per predicted-age bracket: fit_age_intervals on the rescaled true ages
    rescaled = predicted + (true - predicted) / scale
    table = fit_age_intervals(predicted[fitted_on], rescaled[fitted_on])
    low, high = age_intervals(predicted[applied_to], table)
    centre = predicted[applied_to]
    return (np.maximum(centre + (low - centre) * scale[applied_to], 0),
            np.maximum(centre + (high - centre) * scale[applied_to], 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--offsets", type=float, nargs="+", default=[2.0, 4.0, 8.0, 12.0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    val = split[split["split"] == "val"]
    with tempfile.TemporaryDirectory() as folder:
        ages = []
        for path in extract_members(args.model, folder):
            model = AgeGenderModel(path, flip=True)
            frame = evaluate_frame(model, val)
            ages.append(frame["predicted_age"].to_numpy())
    ages = np.array(ages)
    predicted, spread = ages.mean(axis=0), ages.max(axis=0) - ages.min(axis=0)
    true = frame["age"].to_numpy(float)
    groups = frame["group"].to_numpy()
    distinct_groups = np.unique(groups)
    faces = pd.DataFrame({"bracket": [age_bracket(age) for age in true],
                          "race": frame["race"].map(dict(enumerate(RACES))).to_numpy(),
                          "tercile": np.digitize(spread, np.quantile(spread, [1 / 3, 2 / 3]))})
    print(f"{len(true)} validation faces; members' age spread: median {np.median(spread):.2f} years, "
          f"correlation with the pair's absolute error {np.corrcoef(spread, np.abs(true - predicted))[0, 1]:.3f}")
    rows = []
    for offset in [None, *args.offsets]:
        inside, width = np.zeros(len(true)), np.zeros(len(true))
        rng = np.random.default_rng(0)
        for _ in range(args.repeats):
            half = np.isin(groups, rng.permutation(distinct_groups)[: len(distinct_groups) // 2])
            for fitted_on, applied_to in ((half, ~half), (~half, half)):
                low, high = intervals(predicted, true, spread, fitted_on, applied_to, offset)
                inside[applied_to] += ((true[applied_to] >= low) & (true[applied_to] <= high)) / args.repeats
                width[applied_to] += (high - low) / args.repeats
        faces["inside"] = inside * 100
        row = {"interval": "offsets (shipped)" if offset is None else f"per year of spread + {offset:g}",
               "inside": faces["inside"].mean(), "mean width": width.mean(), "median width": np.median(width)}
        for column in ("bracket", "race", "tercile"):
            for name, share in faces.groupby(column)["inside"].mean().items():
                row[f"{column} {name}"] = share
        rows.append(row)
    table = pd.DataFrame(rows).set_index("interval").T
    print("| | " + " | ".join(table.columns) + " |\n|---|" + "---:|" * len(table.columns))
    for name, values in table.iterrows():
        print(f"| {name} | " + " | ".join(f"{value:.1f}" for value in values) + " |")


if __name__ == "__main__":
    main()
