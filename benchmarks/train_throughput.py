"""Model A training speed through the real input pipeline against the same model fed in-memory tensors.

    python benchmarks/train_throughput.py --data ../shared/datasets/utkface [--images 2048] [--steps 40]

The pipeline side decodes (or reads from the crop cache) real images and runs the report's augmentation
per batch, exactly as `agegender train` does; the in-memory side repeats one ready float32 batch, so the
difference is what the input pipeline costs.
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from agegender.data import read_dataset  # noqa: E402
from agegender.images import load_crops  # noqa: E402
from agegender.models import build_model, compile_model  # noqa: E402
from agegender.pipeline import channel_statistics, make_dataset  # noqa: E402
from agegender.recipes import get_recipe  # noqa: E402


def images_per_second(model: keras.Model, dataset: tf.data.Dataset, steps: int, batch_size: int) -> float:
    model.fit(dataset.take(3), epochs=1, verbose=0)  # compile the train step and warm the pipeline
    start = time.perf_counter()
    model.fit(dataset.take(steps), epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    recipe = get_recipe("seed-a")
    frame = read_dataset(args.data).sample(args.images, random_state=0)
    pixels, readable = load_crops(frame["path"].tolist(), recipe.image_size)
    frame, pixels = frame[readable], pixels[readable]
    mean, variance = channel_statistics(pixels)
    keras.utils.set_random_seed(0)

    pipeline = make_dataset(pixels, frame["age"].to_numpy(), frame["gender"].to_numpy(), recipe.batch_size,
                            recipe, training=True).repeat()
    batch = next(iter(pipeline))
    in_memory = tf.data.Dataset.from_tensors(batch).repeat()

    results = {}
    for name, dataset in (("in_memory", in_memory), ("pipeline", pipeline)):
        model = build_model(recipe, mean=mean, variance=variance)
        compile_model(model, recipe)
        results[f"{name}_images_per_second"] = round(images_per_second(model, dataset, args.steps,
                                                                       recipe.batch_size), 1)
    results["pipeline_cost"] = round(1 - results["pipeline_images_per_second"]
                                     / results["in_memory_images_per_second"], 3)
    results.update(steps=args.steps, batch_size=recipe.batch_size, cpu_cores=os.cpu_count())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
