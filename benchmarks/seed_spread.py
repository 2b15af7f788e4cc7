"""Two recipes, each trained with several seeds: is the difference between them more than reseeding gives?

    python benchmarks/seed_spread.py --a A1.onnx A2.onnx [...] --b B1.onnx B2.onnx [...] \
        --data ../shared/datasets/utkface [--split-name val]

Each model is one training seed of its recipe (e.g. `--set training_seed=N`, exported, averaged and
calibrated the same way). Every model reads protocol holdout's chosen part (as its own settings say: flip,
temperature). Per group (overall, per age bracket, gender and race, as `agegender evaluate` groups): each
recipe's mean and standard deviation over its seeds, and the difference of the means with its standard
error from the seeds' spread, sqrt(sd_a^2 / n_a + sd_b^2 / n_b), as `agegender compare` gives it.
`paired_comparison.py` asks whether two single models differ on these faces; this asks whether two recipes
do, which a reseed alone can move as much.
With two or three seeds a recipe's standard deviation is itself rough (a group where they happen to agree
shows 0): read a difference as real only when it is several standard errors and holds across groups.
"""
from __future__ import annotations

import argparse

import numpy as np

from agegender.compare import difference_of_means
from agegender.data import protocol_split, read_dataset
from agegender.evaluate import GROUPS, breakdown, evaluate_frame
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe


def figures(model_path: str, rows) -> dict[str, dict]:
    """One model's scores (faces, gender accuracy, age MAE) overall and per group, as `agegender evaluate`
    groups them, keyed by a label such as "age 60+"."""
    result = breakdown(evaluate_frame(AgeGenderModel(model_path), rows))
    scores = {"overall": result["overall"]}
    for section, label in GROUPS:
        scores.update({f"{label} {name}": group for name, group in result.get(section, {}).items()})
    return scores


def spread(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1))


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

    results = {side: [figures(path, rows) for path in getattr(args, side)] for side in ("a", "b")}
    print(f"the {args.split_name} part of protocol holdout; a: {', '.join(args.a)}; b: {', '.join(args.b)}\n")
    print("| model | gender accuracy | age MAE |\n|---|---:|---:|")
    for side in ("a", "b"):
        for path, result in zip(getattr(args, side), results[side]):
            print(f"| {side}: {path} | {100 * result['overall']['gender_accuracy']:.2f}% | "
                  f"{result['overall']['age_mae']:.3f} |")
    print(f"\n| group | faces | gender % a (mean +- sd, {len(args.a)} seeds) | b ({len(args.b)} seeds) | b - a | "
          "age MAE a | b | b - a |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, faces in results["a"][0].items():
        cells = []
        for key, scale, fmt in (("gender_accuracy", 100, ".2f"), ("age_mae", 1, ".3f")):
            values = {side: [scale * result[label][key] for result in results[side]] for side in ("a", "b")}
            (mean_a, sd_a), (mean_b, sd_b) = spread(values["a"]), spread(values["b"])
            difference, error = difference_of_means(values["b"], values["a"])
            cells += [f"{mean_a:{fmt}} +- {sd_a:{fmt}}", f"{mean_b:{fmt}} +- {sd_b:{fmt}}",
                      f"{difference:+{fmt}} +- {error:{fmt}}"]
        print(f"| {label} | {faces['n']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
