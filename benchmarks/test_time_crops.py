"""Test-time augmentation beyond the flip: does averaging over crops of each face read more of them?

    python benchmarks/test_time_crops.py [MODEL.onnx] --data ../shared/datasets/utkface [--split-name val]

The model (the shipped default without an argument) reads protocol holdout's chosen part in several views of
each face chip: the whole chip, its central 92% and 85% (a zoom in), and its central 92% moved 6 px up or down,
each also mirrored. Printed: gender accuracy and age MAE for a view with its mirror image (the shipped setting is
the whole chip's) and for the whole chip with its mirror plus each other view's pair, outputs averaged as the flip
averages them (before the model's gender temperature, which moves no single probability across 0.5).
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from agegender.data import protocol_split, read_dataset
from agegender.images import load_crops
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe

CHIP = 200  # UTKFace's aligned chips are 200 x 200 px
VIEWS = {"whole": (1.0, 0), "central 92%": (0.92, 0), "central 85%": (0.85, 0), "92% up": (0.92, -6),
         "92% down": (0.92, 6)}  # share of the chip kept, vertical shift in px


def view(chips: np.ndarray, share: float, shift: int, size: int) -> np.ndarray:
    side = round(CHIP * share)
    top, left = (CHIP - side) // 2 + shift, (CHIP - side) // 2
    return np.stack([np.asarray(Image.fromarray(chip[top:top + side, left:left + side]).resize(
        (size, size), Image.BILINEAR)) for chip in chips])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-name", default="val")
    args = parser.parse_args()

    model = AgeGenderModel(args.model, flip=True)
    model.gender_temperature = None  # views are averaged raw, as the flip averages before the temperature
    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    rows = split[split["split"] == args.split_name].reset_index(drop=True)
    chips, readable = load_crops(rows["path"].tolist(), CHIP)
    rows, chips = rows[readable], chips[readable]
    ages, female = rows["age"].to_numpy(), rows["gender"].to_numpy() == 1

    outputs = {}  # view name -> (ages, female probabilities), mirror image averaged in
    for name, (share, shift) in VIEWS.items():
        outputs[name] = model.predict_pixels(view(chips, share, shift, model.image_size))

    def scores(names: list[str]) -> str:
        age = np.mean([outputs[name][0] for name in names], axis=0)
        gender = np.mean([outputs[name][1] for name in names], axis=0)
        return f"{100 * np.mean((gender >= 0.5) == female):.2f}% | {np.mean(np.abs(age - ages)):.3f}"

    print(f"{model.path.name}, the {args.split_name} part of protocol holdout ({len(rows)} faces), each view "
          "with its mirror image\n\n| views | gender | age MAE |\n|---|---:|---:|")
    for name in VIEWS:
        print(f"| {name} | {scores([name])} |")
    for name in list(VIEWS)[1:]:
        print(f"| whole + {name} | {scores(['whole', name])} |")


if __name__ == "__main__":
    main()
