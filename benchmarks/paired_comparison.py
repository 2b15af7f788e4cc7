"""Two models on the same faces, group by group: is a difference more than noise?

    python benchmarks/paired_comparison.py OLD.onnx NEW.onnx --data ../shared/datasets/utkface [--split-name test]

Both models read protocol holdout's chosen part (one pass each, as their own settings say). For gender, the
faces only one of them gets right, and McNemar's exact test on those (two-sided, binomial with p = 1/2): with a
few hundred faces per group a handful of faces either way is noise. For age, the mean drop in absolute error per
face (old minus new) and its standard error. Per age bracket, gender and race, as `agegender evaluate` groups.
"""
from __future__ import annotations

import argparse
from math import comb

import numpy as np

from agegender.data import protocol_split, read_dataset
from agegender.evaluate import GROUPS, group_rows
from agegender.images import load_crops
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe


def mcnemar_p(only_old: int, only_new: int) -> float:
    """Exact two-sided McNemar p-value from the two discordant counts."""
    n = only_old + only_new
    tail = sum(comb(n, k) for k in range(min(only_old, only_new) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-name", default="test")
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    rows = split[split["split"] == args.split_name].reset_index(drop=True)
    right, errors, readable = {}, {}, np.ones(len(rows), bool)
    for name in ("old", "new"):
        model = AgeGenderModel(getattr(args, name))
        pixels, ok = load_crops(rows["path"].tolist(), model.image_size)
        outputs = model.predict_outputs(pixels)
        right[name] = (outputs["gender"] >= 0.5) == (rows["gender"].to_numpy() == 1)
        errors[name] = np.abs(outputs["age"] - rows["age"].to_numpy())
        readable &= ok

    groups, sections = [("overall", np.ones(len(rows), bool))], group_rows(rows)
    for section, label in GROUPS:  # the groups `agegender evaluate` reports
        for name, members in sections.get(section, {}).items():
            groups.append((f"{label} {name}", rows.index.isin(members)))

    print(f"{args.old} (old) against {args.new} (new), the {args.split_name} part of protocol holdout\n")
    print("| group | faces | gender: only old right | only new right | McNemar p | age error drop (years) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, mask in groups:
        mask = mask & readable
        only_old = int((right["old"][mask] & ~right["new"][mask]).sum())
        only_new = int((~right["old"][mask] & right["new"][mask]).sum())
        drop = errors["old"][mask] - errors["new"][mask]
        print(f"| {label} | {mask.sum()} | {only_old} | {only_new} | {mcnemar_p(only_old, only_new):.2f} | "
              f"{drop.mean():+.2f} +- {drop.std(ddof=1) / np.sqrt(mask.sum()):.2f} |")


if __name__ == "__main__":
    main()
