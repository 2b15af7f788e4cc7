"""Would corrections that know more than the predicted age help? Read on the validation part, cross-fitted.

    python benchmarks/conditioned_corrections.py MODEL --data ../shared/datasets/utkface \
        [--members XCEPTION.onnx DLIB.onnx --age-weight 0.35]

Each correction is chosen on half of the validation groups and read on the other half (and the other way round),
over `--splits` random halvings:
- an age offset per predicted gender and predicted decade (the median error of that cell), against none;
- the 80% interval's offsets per predicted-age bracket (`calibration.fit_age_intervals`, what `agegender calibrate`
  fits) for each predicted gender apart, against for all faces together, with the share of true ages inside per
  age bracket within each gender;
- a gender threshold for the faces read as under 10 (half of the shipped model's gender errors are children's),
  against 0.5;
- with `--members`, the members' age weight chosen per predicted decade, against the one `--age-weight`, and
  the members' gender log-odds weighted apart for the faces read as under 10, against equal weights.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from agegender.calibration import age_intervals, fit_age_intervals, logit
from agegender.data import protocol_split, read_dataset
from agegender.evaluate import evaluate_frame, group_rows
from agegender.predictor import AgeGenderModel


def halves(groups: np.ndarray, splits: int, seed: int):
    rng, names = np.random.default_rng(seed), np.unique(groups)
    for _ in range(splits):
        first = np.isin(groups, rng.choice(names, len(names) // 2, replace=False))
        yield from ((first, ~first), (~first, first))  # (fit on, read on)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--members", nargs=2, metavar=("A", "B"))
    parser.add_argument("--age-weight", type=float, default=0.35, help="the first member's age weight")
    parser.add_argument("--splits", type=int, default=20)
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", 1337)
    rows = split[split["split"] == "val"].reset_index(drop=True)
    frame = evaluate_frame(AgeGenderModel(args.model), rows)
    predicted, true = frame["predicted_age"].to_numpy(), frame["age"].to_numpy(float)
    female = (frame["female_probability"] >= 0.5).to_numpy()
    groups, error = frame["group"].to_numpy(), true - predicted
    decade = np.minimum(predicted // 10, 8)
    cells = group_rows(frame)["age_bracket_gender"]
    result = {"model": args.model, "faces": len(frame), "splits": args.splits}

    corrected = []  # an age offset per predicted gender and decade
    for fit, read in halves(groups, args.splits, 0):
        ages = predicted.copy()
        for key in set(zip(female[read], decade[read])):
            into = read & (female == key[0]) & (decade == key[1])
            source = fit & (female == key[0]) & (decade == key[1])
            ages[into] += np.median(error[source]) if source.sum() >= 30 else 0.0
        corrected.append(ages)

    def mae(ages_per_split, index=slice(None)):
        return round(float(np.mean([np.abs(true[index] - ages[index]).mean() for ages in ages_per_split])), 3)

    result["age_mae"] = {variant: {"overall": mae(ages), **{name: mae(ages, index) for name, index in cells.items()}}
                         for variant, ages in (("none", [predicted]), ("offset_per_gender_and_decade", corrected))}

    coverage = {"per_bracket": [], "per_bracket_and_gender": []}  # offsets as `agegender calibrate` fits them
    for fit, read in halves(groups, args.splits, 1):
        everyone = np.ones(len(frame), bool)
        for variant, subsets in (("per_bracket", [everyone]), ("per_bracket_and_gender", [female, ~female])):
            inside = np.zeros(len(frame), bool)
            for subset in subsets:
                table = fit_age_intervals(predicted[fit & subset], true[fit & subset])
                low, high = age_intervals(predicted[read & subset], table)
                inside[read & subset] = (true[read & subset] >= low) & (true[read & subset] <= high)
            coverage[variant].append({"overall": inside[read].mean(),
                                      **{name: inside[np.intersect1d(index, np.flatnonzero(read))].mean()
                                         for name, index in cells.items()}})
    result["interval_coverage"] = {variant: {key: round(float(np.mean([c[key] for c in runs])), 3) for key in runs[0]}
                                   for variant, runs in coverage.items()}

    is_female, child = (frame["gender"] == 1).to_numpy(), predicted < 10
    probability, thresholds, right = frame["female_probability"].to_numpy(), np.linspace(0.2, 0.8, 61), []
    for fit, read in halves(groups, args.splits, 3):
        best = thresholds[int(np.argmax([((probability >= t) == is_female)[fit & child].sum() for t in thresholds]))]
        chosen = np.where(child, probability >= best, female)
        right.append(int((chosen == is_female)[read].sum() - (female == is_female)[read].sum()))
    result["children_gender_threshold"] = {"faces_read_as_under_10": int(child.sum()),
                                           "faces_gained_per_half": round(float(np.mean(right)), 2),
                                           "sd": round(float(np.std(right)), 2)}

    if args.members:
        # each face and its mirror image, as the pair reads them
        first_frame, second_frame = (evaluate_frame(AgeGenderModel(path, flip=True), rows) for path in args.members)
        first, second = first_frame["predicted_age"].to_numpy(), second_frame["predicted_age"].to_numpy()
        grid, blended = np.linspace(0, 1, 21), []
        pair = args.age_weight * first + (1 - args.age_weight) * second
        for fit, read in halves(groups, args.splits, 2):
            ages = pair.copy()
            for d in np.unique(np.minimum(pair // 10, 8)):
                cell = np.minimum(pair // 10, 8) == d
                if (fit & cell).sum() < 30:
                    continue
                mae = [np.abs(w * first[fit & cell] + (1 - w) * second[fit & cell] - true[fit & cell]).mean()
                       for w in grid]
                w = grid[int(np.argmin(mae))]
                ages[read & cell] = w * first[read & cell] + (1 - w) * second[read & cell]
            blended.append(np.abs(ages - true).mean())
        result["member_age_weights"] = {"one_weight": float(np.abs(pair - true).mean()),
                                        "per_decade": float(np.mean(blended)), "per_decade_sd": float(np.std(blended))}
        odds = [logit(f["female_probability"].to_numpy()) for f in (first_frame, second_frame)]
        young, equal, right = pair < 10, (odds[0] + odds[1] > 0) == is_female, []
        for fit, read in halves(groups, args.splits, 4):
            w = grid[int(np.argmax([(((w * odds[0] + (1 - w) * odds[1]) > 0) == is_female)[fit & young].sum()
                                    for w in grid]))]
            weighted = np.where(young, ((w * odds[0] + (1 - w) * odds[1]) > 0) == is_female, equal)
            right.append(int(weighted[read].sum() - equal[read].sum()))
        result["member_gender_weights_for_children"] = {
            "equal_accuracy": round(float(equal.mean()), 4), "faces_gained_per_half": round(float(np.mean(right)), 2),
            "sd": round(float(np.std(right)), 2)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
