"""What the CPU's int8 kernels do to an int8 model: onnxruntime's default kernels against the exact ones.

    python benchmarks/int8_kernels.py --data ../shared/datasets/utkface [--model PATH] [--out FILE.json]

On x86 CPUs without VNNI, onnxruntime's default int8 kernels add pairs of uint8 x int8 products in 16 bits,
which saturate; `agegender.runtime.inference_session` asks for exact kernels there. This runs the same model
(default: the shipped one, with its own flip and calibration) on the validation part of protocol holdout
through both kinds of session, and reports the CPU's instruction sets, each session's gender accuracy and
age MAE, how far apart their answers are, and model time per face (one face at a time, and in batches of 32).
On a CPU with VNNI both sessions should agree exactly.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from agegender.data import protocol_split, read_dataset
from agegender.images import load_crops
from agegender.predictor import AgeGenderModel

INSTRUCTION_SETS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> dict:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"machine": platform.machine()}
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    flags = set(line.split(":", 1)[-1].split())
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    return {"model": model, **{name: name in flags for name in INSTRUCTION_SETS}}


def with_default_kernels(model: AgeGenderModel) -> AgeGenderModel:
    """`model` run by a plain onnxruntime session, as any caller that does not ask for exact kernels gets."""
    import onnxruntime

    model._session = onnxruntime.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    return model


def median_ms_per_face(models: dict, pixels: np.ndarray, batch: int, repeats: int, turn: int = 20) -> dict:
    """Each model's median time per face. The models take turns of `turn` runs, so that a machine whose speed
    drifts slows them alike; not run by run, as a session's idle threads spin for a moment after each run and
    would slow the other's."""
    times = {name: [] for name in models}
    chunks = [pixels[start:start + batch] for start in range(0, min(len(pixels), repeats * batch), batch)]
    for first in range(0, len(chunks), turn):
        for name, model in models.items():
            model.predict_pixels(chunks[first], batch_size=batch)  # wake its threads
            for chunk in chunks[first:first + turn]:
                begin = time.perf_counter()
                model.predict_pixels(chunk, batch_size=batch)
                times[name].append((time.perf_counter() - begin) / len(chunk))
    return {name: 1000 * float(np.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", help="an int8 .onnx model (default: the shipped one)")
    parser.add_argument("--repeats", type=int, default=200, help="timed runs of one face, and of batches of 32")
    parser.add_argument("--out", help="write the figures to this JSON file")
    args = parser.parse_args()

    rows = protocol_split(read_dataset(args.data), "holdout", seed=1337)
    rows = rows[rows["split"] == "val"]
    sessions = {"exact": AgeGenderModel(args.model), "default": with_default_kernels(AgeGenderModel(args.model))}
    pixels, readable = load_crops(rows["path"].tolist(), sessions["exact"].image_size)
    pixels, rows = pixels[readable], rows[readable]
    females, ages = rows["gender"].to_numpy() == 1, rows["age"].to_numpy()
    report = {"cpu": cpu_flags(), "model": str(sessions["exact"].path), "faces": int(len(rows)),
              "flip": sessions["exact"].flip}
    answers = {}
    for name, model in sessions.items():
        age, female = model.predict_pixels(pixels)
        answers[name] = (age, female)
        report[name] = {"gender_accuracy": float(np.mean((female >= 0.5) == females)),
                        "age_mae": float(np.mean(np.abs(age - ages)))}
    for label, batch, repeats in (("one_at_a_time", 1, args.repeats), ("in_batches_of_32", 32, args.repeats // 4)):
        for name, ms in median_ms_per_face(sessions, pixels, batch, repeats).items():
            report[name][f"ms_per_face_{label}"] = ms
    (age_a, female_a), (age_b, female_b) = answers["exact"], answers["default"]
    report["apart"] = {"age_years_mean": float(np.mean(np.abs(age_a - age_b))),
                       "female_probability_mean": float(np.mean(np.abs(female_a - female_b))),
                       "gender_answers_differing": int(np.sum((female_a >= 0.5) != (female_b >= 0.5)))}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
