"""Which faces the detector finds in photos of every size, how long it takes, and how well small faces read.

    python benchmarks/face_size_recall.py --data ../shared/datasets/utkface [--model PATH] [--photos 5]
        [--min-face 40 80] [--detector both|hog|blazeface]

Group photos are made of development chips: six faces in a row on a textured background, each face pasted at
a given size (the chip's side, about the width of the detector's box), in photos of 1024 x 768, 2000 x 1500 and
4000 x 3000 pixels (a 12-megapixel phone photo). For the default search and for each `--min-face` it reports
the share of faces found, the median time per photo (detection, landmarks and alignment; the photo decoded
already), and, for the faces found, how far the model's age moves and how often its gender agrees between the
re-cut chip and the original one (a small face is found but read from fewer pixels).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image

from agegender.data import read_dataset
from agegender.faces import FaceFinder
from agegender.predictor import AgeGenderModel
from group_photos import group_photo

PHOTO_SIZES = ((1024, 768), (2000, 1500), (4000, 3000))
FACE_SIZES = (60, 80, 120, 160, 240, 320)
FACES_PER_PHOTO = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", help="the model whose readings are compared (default: the shipped one)")
    parser.add_argument("--photos", type=int, default=5, help="photos per photo size and face size")
    parser.add_argument("--min-face", type=float, nargs="*", default=[40, 80])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detector", default="both", help="face detectors (as agegender predict --detector)")
    args = parser.parse_args()

    frame = read_dataset(args.data).sample(args.photos * FACES_PER_PHOTO, random_state=args.seed)
    chips = [Image.open(path).convert("RGB") for path in frame["path"]]
    model = AgeGenderModel(args.model)
    original_ages, original_female = model.predict_pixels(np.stack([model.resize(np.asarray(c)) for c in chips]))
    results = []
    for min_face in [None, *args.min_face]:
        finder = FaceFinder(min_face=min_face, detector=args.detector)
        for photo_size in PHOTO_SIZES:
            for face in FACE_SIZES:
                if face * FACES_PER_PHOTO > photo_size[0]:
                    continue
                rng = np.random.default_rng(args.seed)
                found, seconds, age_moves, agree = 0, [], [], []
                for first in range(0, len(chips), FACES_PER_PHOTO):
                    group = chips[first:first + FACES_PER_PHOTO]
                    photo, _ = group_photo(group, face, photo_size, rng)
                    start = time.perf_counter()
                    try:
                        faces = finder.find(photo)
                    except ValueError:  # the search would be over its pixel limit
                        break
                    seconds.append(time.perf_counter() - start)
                    found += len(faces)
                    if faces:
                        ages, female = model.predict_pixels(np.stack([model.resize(f.chip) for f in faces]))
                        # each found face against the pasted chip whose column it lies in
                        for age, fem, detected in zip(ages, female, faces):
                            index = first + min(len(group) - 1, detected.box[0] // (photo_size[0] // len(group)))
                            age_moves.append(abs(float(age) - float(original_ages[index])))
                            agree.append((fem >= 0.5) == (original_female[index] >= 0.5))
                if not seconds:
                    continue
                results.append({
                    "min_face": min_face or "default", "photo": f"{photo_size[0]}x{photo_size[1]}", "face": face,
                    "found": f"{found}/{len(seconds) * FACES_PER_PHOTO}",
                    "ms_per_photo": round(float(np.median(seconds)) * 1000),
                    "age_move_mean": round(float(np.mean(age_moves)), 2) if age_moves else None,
                    "gender_agreement": round(float(np.mean(agree)), 3) if agree else None,
                })
                print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"model": str(model.path), "results": results}, indent=2))


if __name__ == "__main__":
    main()
