"""Which faces each face detector finds, tilted or not, how long it takes, and how well the faces it cuts read.

    python benchmarks/detectors.py --data ../shared/datasets/utkface [--faces 300] [--model PATH]

Group photos of 1024 x 768 are made of validation chips of protocol holdout (never its test part): six faces in
a row on a textured background, each pasted at a given size (the chip's side) and tilted by a given angle, to
the left or right at random. For each detector (`FaceFinder(detector=...)`: HOG alone, HOG and BlazeFace, and
BlazeFace alone) it reports the share of faces found, detections that are no pasted face, the median time per
photo (detection, landmarks and alignment; the photo decoded already), and, for the faces found, the model's
gender accuracy and age error against the labels, beside the same faces' original chips read as they are.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image

from agegender.data import protocol_split, read_dataset
from agegender.faces import DETECTORS, FaceFinder
from agegender.predictor import AgeGenderModel
from group_photos import group_photo

PHOTO_SIZE = (1024, 768)
FACE_SIZES = (80, 120, 160)
TILTS = (0, 20, 35, 50)
FACES_PER_PHOTO = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", help="the model that reads the faces (default: the shipped one)")
    parser.add_argument("--faces", type=int, default=300, help="validation faces, six to a photo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    split = protocol_split(read_dataset(args.data), "holdout", 1337)
    frame = split[split["split"] == "val"].sample(args.faces - args.faces % FACES_PER_PHOTO, random_state=args.seed)
    chips = [Image.open(path).convert("RGB") for path in frame["path"]]
    ages, females = frame["age"].to_numpy(float), frame["gender"].to_numpy() == 1
    model = AgeGenderModel(args.model)
    chip_ages, chip_female = model.predict_pixels(np.stack([model.resize(np.asarray(c)) for c in chips]))
    finders = {name: FaceFinder(detector=name) for name in DETECTORS}
    results = []
    for face in FACE_SIZES:
        for tilt in TILTS:
            rng = np.random.default_rng(args.seed)
            photos = [group_photo(chips[first:first + FACES_PER_PHOTO], face, PHOTO_SIZE, rng, tilt)
                      for first in range(0, len(chips), FACES_PER_PHOTO)]
            for name, finder in finders.items():
                found, false, seconds, crops, which = 0, 0, [], [], []
                for number, (photo, centres) in enumerate(photos):
                    start = time.perf_counter()
                    faces = finder.find(photo)
                    seconds.append(time.perf_counter() - start)
                    for detected in faces:
                        x0, y0, x1, y1 = detected.box
                        inside = [i for i, (x, y) in enumerate(centres) if x0 <= x <= x1 and y0 <= y <= y1]
                        if not inside:
                            false += 1
                            continue
                        crops.append(model.resize(detected.chip))
                        which.append(number * FACES_PER_PHOTO + inside[0])
                which = np.unique(which, return_index=True)  # a face found twice counts once
                found = len(which[0])
                row = {"face": face, "tilt": tilt, "detector": name, "found": f"{found}/{len(chips)}",
                       "not_a_face": false, "ms_per_photo": round(float(np.median(seconds)) * 1000)}
                if found:
                    read_ages, read_female = model.predict_pixels(np.stack(crops)[which[1]])
                    faces = which[0]
                    row.update({
                        "gender_accuracy": round(float(np.mean((read_female >= 0.5) == females[faces])), 3),
                        "age_mae": round(float(np.mean(np.abs(read_ages - ages[faces]))), 2),
                        "chip_gender_accuracy": round(float(np.mean((chip_female[faces] >= 0.5) == females[faces])), 3),
                        "chip_age_mae": round(float(np.mean(np.abs(chip_ages[faces] - ages[faces]))), 2),
                    })
                results.append(row)
                print(json.dumps(row), flush=True)
    print(json.dumps({"model": str(model.path), "faces": len(chips), "photo": "x".join(map(str, PHOTO_SIZE)),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
