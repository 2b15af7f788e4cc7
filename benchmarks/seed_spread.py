"""Two recipes, each trained with several seeds: is the difference between them more than reseeding gives?

    python benchmarks/seed_spread.py --a A1.onnx A2.onnx [...] --b B1.onnx B2.onnx [...] \
        --data ../shared/datasets/utkface [--split-name val]

Each model is one training seed of its recipe (e.g. `--set training_seed=N`, exported, averaged and
calibrated the same way). Every model reads protocol holdout's chosen part (as its own settings say: flip,
temperature). Per group (overall, per age bracket, gender and race, as `agegender evaluate` groups): each
recipe's mean and standard deviation over its seeds, and the difference of the means with its standard
error from the seeds' spread, sqrt(sd_a^2 / n_a + sd_b^2 / n_b). `paired_comparison.py` asks whether two
single models differ on these faces; this asks whether two recipes do, which a reseed alone can move as much.
With two or three seeds a recipe's standard deviation is itself rough (a group where they happen to agree
shows 0): read a difference as real only when it is several standard errors and holds across groups.
"""
from __future__ import annotations

import argparse

import numpy as np

from agegender.data import protocol_split, read_dataset
from agegender.evaluate import GROUPS, group_rows
from agegender.images import load_crops
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe


def figures(model_path: str, rows, groups: list[tuple[str, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """(gender accuracy %, age MAE) of one model per group, on the faces it could read."""
    model = AgeGenderModel(model_path)
    pixels, readable = load_crops(rows["path"].tolist(), model.image_size)
    outputs = model.predict_outputs(pixels)
    right = (outputs["gender"] >= 0.5) == (rows["gender"].to_numpy() == 1)
    errors = np.abs(outputs["age"] - rows["age"].to_numpy())
    return {label: (100 * right[mask & readable].mean(), errors[mask & readable].mean()) for label, mask in groups}


def spread(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs="+", required=True, help="one model per seed of the first recipe")
    parser.add_argument("--b", nargs="+", required=True, help="one model per seed of the second recipe")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-name", default="val")
    args = parser.parse_args()
    if len(args.a) < 2 or len(args.b) < 2:
        parser.error("give at least two seeds (models) for each recipe: one run has no spread")

    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    rows = split[split["split"] == args.split_name].reset_index(drop=True)
    groups, sections = [("overall", np.ones(len(rows), bool))], group_rows(rows)
    for section, label in GROUPS:
        for name, members in sections.get(section, {}).items():
            groups.append((f"{label} {name}", rows.index.isin(members)))

    results = {side: [figures(path, rows, groups) for path in getattr(args, side)] for side in ("a", "b")}
    print(f"the {args.split_name} part of protocol holdout; a: {', '.join(args.a)}; b: {', '.join(args.b)}\n")
    print("| model | gender accuracy | age MAE |\n|---|---:|---:|")
    for side in ("a", "b"):
        for path, result in zip(getattr(args, side), results[side]):
            print(f"| {side}: {path} | {result['overall'][0]:.2f}% | {result['overall'][1]:.3f} |")
    print(f"\n| group | faces | gender % a (mean +- sd, {len(args.a)} seeds) | b ({len(args.b)} seeds) | b - a | "
          "age MAE a | b | b - a |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, mask in groups:
        cells = []
        for index, fmt in ((0, ".2f"), (1, ".3f")):
            (mean_a, sd_a), (mean_b, sd_b) = (spread([result[label][index] for result in results[side]])
                                              for side in ("a", "b"))
            error = np.sqrt(sd_a ** 2 / len(args.a) + sd_b ** 2 / len(args.b))
            cells += [f"{mean_a:{fmt}} +- {sd_a:{fmt}}", f"{mean_b:{fmt}} +- {sd_b:{fmt}}",
                      f"{mean_b - mean_a:+{fmt}} +- {error:{fmt}}"]
        print(f"| {label} | {mask.sum()} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
