"""Soft targets for knowledge distillation: several models' averaged outputs on the training images.

    python benchmarks/teacher_outputs.py MODEL.onnx [MODEL.onnx ...] --data ../shared/datasets/utkface --out pair.npz
    agegender train ... --set teacher_outputs=pair.npz [--set teacher_output_weight=0.5]

Each model (an .onnx file or a run folder's model.onnx) reads protocol holdout's training part at its own input
size, one pass; their gender log-odds and ages are averaged (as benchmarks/shared_errors.py scores a pair) and
stored per image path. Only training images are written: validation and test keep their true labels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from agegender.calibration import logit
from agegender.data import protocol_split, read_dataset
from agegender.images import load_crops
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    train = split[split["split"] == "train"].reset_index(drop=True)
    odds, ages = [], []
    for path in args.models:
        model = AgeGenderModel(path, flip=False)  # a run folder resolves to its model.onnx
        pixels, readable = load_crops(train["path"].tolist(), model.image_size)
        outputs = model.predict_outputs(pixels)  # unreadable rows hold zeros; training skips them anyway
        odds.append(logit(outputs["gender"]))
        ages.append(outputs["age"])
        print(f"{path}: {readable.sum()} training faces", flush=True)
    female = 1 / (1 + np.exp(-np.mean(odds, axis=0)))
    np.savez(args.out, paths=np.array([str(Path(p).resolve()) for p in train["path"]]),
             female_probability=female.astype("f4"), age=np.mean(ages, axis=0).astype("f4"))
    agreement = float(((female >= 0.5) == (train["gender"].to_numpy() == 1)).mean())
    print(f"wrote {args.out}: {len(train)} faces; the averaged gender agrees with the label on {agreement:.2%}")


if __name__ == "__main__":
    main()
