"""What int8 does to a trained model's ONNX export: file size, time per face and validation accuracy.

    python benchmarks/quantization.py runs/xception [--calibration-images 256] [--out reports/benchmarks/x.json]

Three versions of the run's `model.onnx`: float32 as exported; "int8 dense", the dense layers' weights
stored as int8 (onnxruntime dynamic quantisation of MatMul, what `agegender export --int8` does); and
"int8 static", every convolution and dense layer run in int8 (`agegender export --int8 static`: QDQ,
per-channel weights, activation ranges calibrated on training images of the run's split, never validation
ones). Each is scored on the run's validation images (the same figures as its val_breakdown) and timed on
one face at a time and in batches.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder (model.onnx and split.csv)")
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from predict_speed import median_ms  # noqa: PLC0415 - the benchmark folder's own helper

    from agegender.data import load_split
    from agegender.evaluate import breakdown
    from agegender.export import dense_int8, static_int8, update_metadata
    from agegender.images import load_crops
    from agegender.predictor import AgeGenderModel

    split = load_split(args.run / "split.csv")
    source = args.run / "model.onnx"
    size = AgeGenderModel(source).image_size
    val = split[split["split"] == "val"].reset_index(drop=True)
    val_pixels, readable = load_crops(val["path"].tolist(), size)
    val = val[readable].reset_index(drop=True)
    val_pixels = val_pixels[readable]
    train = split[split["split"] == "train"].sample(args.calibration_images, random_state=0)
    calibration, readable = load_crops(train["path"].tolist(), size)
    calibration = calibration[readable].astype("float32")

    results = {"run": str(args.run), "validation_images": len(val), "calibration_images": len(calibration)}
    with tempfile.TemporaryDirectory() as scratch:
        versions = {"float32": source, "int8 dense": Path(scratch) / "dense.onnx",
                    "int8 static": Path(scratch) / "static.onnx"}
        dense_int8(source, versions["int8 dense"])
        static_int8(source, versions["int8 static"], calibration)
        metadata = AgeGenderModel(source).metadata
        for name, path in versions.items():
            if path != source:
                update_metadata(path, metadata)
            model = AgeGenderModel(path, flip=False)
            ages, females = model.predict_pixels(val_pixels)
            overall = breakdown(val.assign(predicted_age=ages, female_probability=females))["overall"]
            batch = val_pixels[:32]
            model.predict_pixels(batch)  # warm-up
            results[name] = {
                "megabytes": round(path.stat().st_size / 1e6, 1),
                "ms_per_face_single": round(median_ms(lambda: model.predict_pixels(val_pixels[:1]), 100), 2),
                "ms_per_face_batch32": round(median_ms(lambda: model.predict_pixels(batch), 20) / 32, 2),
                "val_gender_accuracy": round(overall["gender_accuracy"], 4),
                "val_age_mae": round(overall["age_mae"], 3),
            }
            print(name, json.dumps(results[name]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
