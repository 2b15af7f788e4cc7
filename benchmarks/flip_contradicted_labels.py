"""A copy of the labels with the training faces' gender flipped where every given run confidently disagrees.

    python benchmarks/flip_contradicted_labels.py RUN [RUN ...] --data ../shared/datasets/utkface \
        --out relabelled.csv [--min-age 20] [--confidence 0.9]

For training on cleaner labels (confident learning, Northcutt et al. 2021): the runs read the holdout training
part (their own training images; a face whose label a network still contradicts after training on it is
likely mislabelled: about a third of the confident shared errors on the validation part looked so by eye,
reports/gender-label-audit-val.csv). Faces under `--min-age` are left alone, because a child's gender is
often not in the face. Only training faces change: the validation and test labels stay as they are, so
figures stay comparable. Rows, order and duplicate groups are those of the dataset's labels, so the protocol
splits it into the very same parts (and `train --init-from` accepts runs on the original labels). Paths are
written as the dataset gives them: run `agegender train --data OUT` from the folder this was run in.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from agegender.data import protocol_split, read_dataset
from agegender.images import load_crops
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--min-age", type=float, default=20)
    parser.add_argument("--confidence", type=float, default=0.9)
    args = parser.parse_args()

    dataset = read_dataset(args.data)
    split = protocol_split(dataset, "holdout", Recipe.seed)
    train = split[(split["split"] == "train") & (split["age"] >= args.min_age)]
    models = [AgeGenderModel(run / "model.onnx", flip=False) for run in args.runs]
    pixels, readable = load_crops(train["path"].tolist(), models[0].image_size)
    train, pixels = train[readable], pixels[readable]
    female = [model.predict_outputs(pixels)["gender"] for model in models]
    said = np.array([(probability >= 0.5).astype(int) for probability in female])
    mean = np.mean(female, axis=0)
    flagged = (said != train["gender"].to_numpy()).all(axis=0) & (np.abs(mean - 0.5) > args.confidence - 0.5)
    flip = set(train["path"][flagged])
    relabelled = dataset.assign(gender=np.where(dataset["path"].isin(flip), 1 - dataset["gender"], dataset["gender"]))
    relabelled.to_csv(args.out, index=False)
    ages = train["age"][flagged]
    print(f"{len(flip)} of {len(train)} training faces aged {args.min_age:g}+ flipped "
          f"({int((train['gender'][flagged] == 0).sum())} male -> female, ages {ages.min():g}-{ages.max():g}); "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
