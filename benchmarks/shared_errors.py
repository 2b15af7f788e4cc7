"""Do several models make the same gender errors, and would averaging their outputs help?

    python benchmarks/shared_errors.py RUN RUN [RUN ...] --data ../shared/datasets/utkface [--audit faces.csv]

Each run's float32 export (`model.onnx`), or an .onnx file given instead of a run (e.g. an int8 export), reads
the holdout validation part (never the test part) at its own input size, one pass.
Printed: each model's and every subset's gender accuracy and age MAE when their outputs are averaged (gender
log-odds and ages), and how many faces every model gets wrong. With `--audit`, the faces that every model
gets wrong, their averaged output over 90% sure, go to a CSV for a person to look at: a confident error shared by
independently trained models is often a wrong label.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from agegender.calibration import logit
from agegender.data import protocol_split, read_dataset
from agegender.images import load_crops
from agegender.predictor import AgeGenderModel
from agegender.recipes import Recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--audit", type=Path, help="write the confident shared gender errors to this CSV")
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", Recipe.seed)
    val = split[split["split"] == "val"].reset_index(drop=True)
    models = {run.stem if run.suffix == ".onnx" else run.name: AgeGenderModel(run, flip=False) for run in args.runs}
    crops = {size: load_crops(val["path"].tolist(), size) for size in {model.image_size for model in models.values()}}
    readable = np.logical_and.reduce([mask for _, mask in crops.values()])
    val = val[readable].reset_index(drop=True)
    gender, age = val["gender"].to_numpy(), val["age"].to_numpy()
    outputs = {}
    for name, model in models.items():  # each model at its own input size
        predicted = model.predict_outputs(crops[model.image_size][0][readable])
        outputs[name] = (logit(predicted["gender"]), predicted["age"])
    for size in range(1, len(outputs) + 1):
        for names in itertools.combinations(outputs, size):
            odds = np.mean([outputs[name][0] for name in names], axis=0)
            ages = np.mean([outputs[name][1] for name in names], axis=0)
            print(json.dumps({"runs": list(names), "gender_accuracy": round(float(((odds >= 0) == gender).mean()), 4),
                              "age_mae": round(float(np.abs(ages - age).mean()), 3)}), flush=True)
    wrong = np.array([(odds >= 0) != gender for odds, _ in outputs.values()])
    female = 1 / (1 + np.exp(-np.mean([odds for odds, _ in outputs.values()], axis=0)))
    confident = wrong.all(axis=0) & (np.abs(female - 0.5) > 0.4)
    print(json.dumps({"faces": len(val), "wrong_per_model": wrong.sum(axis=1).tolist(),
                      "wrong_in_every_model": int(wrong.all(axis=0).sum()), "wrong_in_any": int(wrong.any(axis=0).sum()),
                      "confidently_wrong_in_every_model": int(confident.sum())}))
    if args.audit:
        pd.DataFrame({"file": val["path"][confident].map(lambda path: Path(path).name),
                      "label_gender": gender[confident], "label_age": age[confident],
                      "mean_female_probability": female[confident].round(3)}).to_csv(args.audit, index=False)
        print(f"wrote {args.audit}")


if __name__ == "__main__":
    main()
