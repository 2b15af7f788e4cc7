"""How much each member of an averaged pair should count: validation figures by member weight.

    python benchmarks/member_weights.py PAIR.onnx [PAIR2.onnx ...] --data ../shared/datasets/utkface \
        [--split-name val] [--step 0.05]

Each PAIR is an average of two models (agegender average), e.g. the default model and pairs of the same two
recipes trained with other seeds. Every one reads protocol holdout's chosen part once, with its members'
gender log-odds and ages taken from inside the graph (face and mirror image averaged when the model's
metadata asks for the flip), and the two are recombined with the first member's weight w from 0 to 1 (the
second's 1 - w), gender and age apart. Printed per w, averaged over the pairs: gender accuracy and age MAE
overall and of the worst age bracket and gender group of the equal average (agegender evaluate's groups).
Then, per pair, the best w of each output and what choosing it is worth on faces it was not chosen on:
the faces are halved at random 50 times, w chosen on one half and scored on the other against equal
weights (w = 0.5). A gain that reads positive here but not in that halving is the choice fitting noise.
Pass the chosen weights to `agegender average --gender-weights W 1-W --age-weights V 1-V`, then calibrate.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from agegender.data import protocol_split, read_dataset
from agegender.evaluate import breakdown
from agegender.images import load_crops
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe

HALVINGS = 50


def member_outputs(path: str, rows: pd.DataFrame) -> tuple[list[str], pd.DataFrame, np.ndarray, np.ndarray]:
    """The members' names, the readable rows, and each member's gender log-odds and age per face (2 x N each)."""
    import onnx
    from onnx import TensorProto, helper

    from agegender.runtime import inference_session

    model = AgeGenderModel(path)
    members = model.metadata.get("members", [])
    if len(members) != 2:
        raise SystemExit(f"{path} is not an average of two models (agegender average)")
    graph = onnx.load(path)
    names = [f"member{index}/{output}" for index in (0, 1) for output in ("odds", "age")]
    graph.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names)
    session = inference_session(graph.SerializeToString())
    pixels, readable = load_crops(rows["path"].tolist(), model.image_size)
    pixels = pixels[readable].astype(np.float32)
    views = [pixels, pixels[:, :, ::-1]] if model.flip else [pixels]
    values = {name: [] for name in names}
    for view in views:
        for start in range(0, len(view), 64):
            batch = np.ascontiguousarray(view[start:start + 64])
            for name, value in zip(names, session.run(names, {session.get_inputs()[0].name: batch})):
                values[name].append(value.reshape(-1))
    mean = {name: np.concatenate(parts).reshape(len(views), -1).mean(axis=0) for name, parts in values.items()}
    odds = np.stack([mean["member0/odds"], mean["member1/odds"]])
    ages = np.stack([mean["member0/age"], mean["member1/age"]])
    names = [member.get("name", member["file"]) for member in members]
    return names, rows[readable].reset_index(drop=True), odds, ages


def mixed(pair: np.ndarray, w: float) -> np.ndarray:
    """The first member's values weighted w, the second's 1 - w."""
    return w * pair[0] + (1 - w) * pair[1]


def combined(rows: pd.DataFrame, odds: np.ndarray, ages: np.ndarray, w_gender: float, w_age: float) -> pd.DataFrame:
    return rows.assign(female_probability=1 / (1 + np.exp(-mixed(odds, w_gender))), predicted_age=mixed(ages, w_age))


def accuracy(rows, odds, w, faces) -> float:
    return float(((mixed(odds, w)[faces] >= 0) == rows["gender"].values[faces]).mean())


def mae(rows, ages, w, faces) -> float:
    return float(np.abs(mixed(ages, w)[faces] - rows["age"].values[faces]).mean())


def halving_gain(rows, odds, ages, grid, rng) -> tuple[float, float]:
    """Mean gain (gender points, age years) of the w chosen on one half of the faces, scored on the other."""
    gains = []
    for _ in range(HALVINGS):
        order = rng.permutation(len(rows))
        halves = (order[:len(order) // 2], order[len(order) // 2:])
        for fit, held in (halves, halves[::-1]):
            w_gender = grid[np.argmax([accuracy(rows, odds, w, fit) for w in grid])]
            w_age = grid[np.argmin([mae(rows, ages, w, fit) for w in grid])]
            gains.append((accuracy(rows, odds, w_gender, held) - accuracy(rows, odds, 0.5, held),
                          mae(rows, ages, w_age, held) - mae(rows, ages, 0.5, held)))
    gender, age = np.mean(gains, axis=0)
    return 100 * gender, age


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="averages of two models, the same two members in each")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-name", default="val")
    parser.add_argument("--step", type=float, default=0.05, help="spacing of the weights tried (default 0.05)")
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    rows = split[split["split"] == args.split_name].reset_index(drop=True)
    grid = np.round(np.arange(0, 1 + 1e-9, args.step), 6)
    read = [member_outputs(path, rows) for path in args.models]
    names, outputs = read[0][0], [output for _, *output in read]
    # the groups to watch: the worst of the equal average, as agegender evaluate names them
    worst = breakdown(combined(*outputs[0], 0.5, 0.5))["worst"]
    worst_age, worst_gender = worst["age_bracket"]["age_mae"], worst["age_bracket"]["gender_accuracy"]

    print(f"the {args.split_name} part of protocol holdout; {len(args.models)} pair(s); w: the weight of "
          f"{names[0]} (the other: {names[1]})\n")
    print(f"| w | gender accuracy | age MAE | age {worst_age} MAE | age {worst_gender} gender accuracy |")
    print("|---:|---:|---:|---:|---:|")
    for w in grid:
        results = [breakdown(combined(*output, w, w)) for output in outputs]
        print(f"| {w:.2f} | {100 * np.mean([r['overall']['gender_accuracy'] for r in results]):.2f}% "
              f"| {np.mean([r['overall']['age_mae'] for r in results]):.3f} "
              f"| {np.mean([r['age_bracket'][worst_age]['age_mae'] for r in results]):.3f} "
              f"| {100 * np.mean([r['age_bracket'][worst_gender]['gender_accuracy'] for r in results]):.2f}% |")

    print("\n| pair | best w, gender | best w, age | chosen on half the faces, scored on the other: gender "
          "(points), age (years), against w = 0.5 |\n|---|---:|---:|---:|")
    rng = np.random.default_rng(0)
    every = slice(None)
    for path, (part, odds, ages) in zip(args.models, outputs):
        w_gender = grid[np.argmax([accuracy(part, odds, w, every) for w in grid])]
        w_age = grid[np.argmin([mae(part, ages, w, every) for w in grid])]
        gender_gain, age_gain = halving_gain(part, odds, ages, grid, rng)
        print(f"| {path} | {w_gender:.2f} | {w_age:.2f} | {gender_gain:+.2f}, {age_gain:+.3f} |")


if __name__ == "__main__":
    main()
