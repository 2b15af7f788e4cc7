"""Does averaging the weights of runs on one trajectory (a "model soup") beat the best of them?

    python benchmarks/weight_averaging.py RUN RUN [RUN ...]

Each run's best.keras is read; every non-empty subset of the runs is averaged weight by weight (uniform soup,
Wortsman et al. 2022) into the first run's network, and scored on the first run's validation part, one pass,
float32 (never the test part). The runs must share the network's weight shapes (e.g. a run and its
`--init-from` continuations); Model B's backbone BatchNormalization keeps ImageNet statistics, so averaging
needs no statistics recomputed.
"""
from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    import keras

    from agegender.data import load_split
    from agegender.evaluate import breakdown, evaluate_frame
    from agegender.predictor import AgeGenderModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()

    weights = {run.name: keras.models.load_model(run / "best.keras", compile=False).get_weights() for run in args.runs}
    network = keras.models.load_model(args.runs[0] / "best.keras", compile=False)
    split = load_split(args.runs[0] / "split.csv")
    val = split[split["split"] == "val"]
    report = []
    with tempfile.TemporaryDirectory() as folder:
        soup_path = Path(folder) / "soup.keras"
        for size in range(1, len(args.runs) + 1):
            for names in itertools.combinations(weights, size):
                network.set_weights([np.mean(arrays, axis=0) for arrays in zip(*(weights[n] for n in names))])
                network.save(soup_path)
                overall = breakdown(evaluate_frame(AgeGenderModel(soup_path, flip=False), val))["overall"]
                report.append({"runs": list(names), "gender_accuracy": round(overall["gender_accuracy"], 4),
                               "age_mae": round(overall["age_mae"], 3)})
                print(json.dumps(report[-1]), flush=True)


if __name__ == "__main__":
    main()
