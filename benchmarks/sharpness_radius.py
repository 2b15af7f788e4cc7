"""How sharp a network is: how much one SAM ascent step of each radius raises its training loss.

    python benchmarks/sharpness_radius.py --recipe dlib-resnet --init-from RUN_OR_ONNX --data ../shared/datasets/utkface \
        [--set KEY=VALUE ...] [--backbone-weights W.h5] [--faces 256] [--radii 0.002 0.005 0.01 0.02 0.05]

A way to choose `--set sam_radius` on training faces alone, before a run (accuracy.md rows 45-46): the network is
built as `agegender train` would build it with these settings and started from `--init-from` (a run folder or an
exported .onnx model), then, on `--faces` faces of protocol holdout's training part in batches of the recipe's
size, the weights are moved `radius` along each batch's gradient (SAM's ascent, sharpness.py) and the loss is read
there (inference mode: no dropout, so the rise is the move's alone). Printed per radius: the loss there over the
loss at the weights, mean and range over the batches. Radii that raise it by a few tens of percent are the
regime the SAM paper works in; rises of 2-3 times swamp the gradient the step is meant to improve.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--init-from", required=True, type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--backbone-weights")
    parser.add_argument("--faces", type=int, default=256)
    parser.add_argument("--radii", type=float, nargs="+", default=[0.002, 0.005, 0.01, 0.02, 0.05])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from agegender.data import protocol_split, read_dataset
    from agegender.images import load_crops
    from agegender.models import build_model, compile_model
    from agegender.pipeline import make_dataset
    from agegender.recipes import get_recipe
    from agegender.sharpness import moved_uphill
    from agegender.train import load_start_weights

    recipe = get_recipe(args.recipe)
    recipe = recipe.with_overrides(**recipe.parse_settings(args.set))
    split = protocol_split(read_dataset(args.data), "holdout", recipe.seed)
    rows = split[split["split"] == "train"].sample(args.faces, random_state=args.seed)
    pixels, readable = load_crops(rows["path"].tolist(), recipe.image_size)
    rows, pixels = rows[readable], pixels[readable]
    batches = list(make_dataset(pixels, rows["age"].to_numpy(), rows["gender"].to_numpy(), recipe.batch_size))

    keras.utils.set_random_seed(args.seed)
    model = build_model(recipe, args.backbone_weights)
    load_start_weights(model, args.init_from, recipe)
    compile_model(model, recipe)
    weights = model.trainable_variables

    def loss(x, y):
        return model.compute_loss(x=x, y=y, y_pred=model(x, training=False))

    print(f"{args.init_from}: {sum(int(np.prod(w.shape)) for w in weights):,} trainable weights, {len(rows)} faces")
    for radius in args.radii:
        rises = []
        for x, y in batches:
            with tf.GradientTape() as tape:
                before = loss(x, y)
            with moved_uphill(weights, tape.gradient(before, weights), radius):
                rises.append(float(loss(x, y)) / float(before))
        print(f"radius {radius}: loss x {np.mean(rises):.2f} (batches {np.min(rises):.2f}-{np.max(rises):.2f})")


if __name__ == "__main__":
    main()
