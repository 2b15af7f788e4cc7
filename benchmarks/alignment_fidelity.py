"""How faithfully face detection + alignment recovers UTKFace's own crops from ordinary-looking photos.

    python benchmarks/alignment_fidelity.py --data ../shared/datasets/utkface [--model PATH] [--count 200]
        [--detector both|hog|blazeface]

Each development chip is pasted into a larger photo (textured background, scale 1-2.5x, rotation up to
20 degrees, off-centre); the pipeline then finds the face and cuts its chip again. Reported: how often the
face is found, the pixel error between the recovered and the original chip (mean absolute grey levels,
whole chip and its central half), and how the model's predictions on the two differ.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image, ImageFilter

from agegender.data import read_dataset
from agegender.faces import FaceFinder
from agegender.predictor import AgeGenderModel


def paste_into_photo(chip: Image.Image, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(500, 800))
    noise = rng.integers(0, 255, (side // 16, side // 16, 3), dtype=np.uint8)
    photo = Image.fromarray(noise).resize((side, side), Image.BICUBIC).filter(ImageFilter.GaussianBlur(3))
    scale = rng.uniform(1.0, 2.5)
    face = chip.resize((round(200 * scale),) * 2, Image.BICUBIC)
    angle = rng.uniform(-20, 20)
    mask = Image.new("L", face.size, 255).rotate(angle, Image.BICUBIC, expand=True)
    face = face.rotate(angle, Image.BICUBIC, expand=True)
    x = int(rng.integers(0, max(1, side - face.width)))
    y = int(rng.integers(0, max(1, side - face.height)))
    photo.paste(face, (x, y), mask)
    return photo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", help="model whose predictions are compared (default: the shipped one)")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--detector", default="both", help="face detectors (as agegender predict --detector)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    frame = read_dataset(args.data).sample(args.count, random_state=args.seed)
    finder, model = FaceFinder(detector=args.detector), AgeGenderModel(args.model)
    originals, recovered, whole, central, missed = [], [], [], [], 0
    for path in frame["path"]:
        chip = Image.open(path).convert("RGB")
        faces = finder.find(np.asarray(paste_into_photo(chip, rng)))
        if not faces:
            missed += 1
            continue
        original, found = np.asarray(chip, dtype=float), faces[0].chip.astype(float)
        whole.append(np.abs(original - found).mean())
        central.append(np.abs(original[50:150, 50:150] - found[50:150, 50:150]).mean())
        originals.append(model.resize(np.asarray(chip)))
        recovered.append(model.resize(faces[0].chip))
    ages_a, female_a = model.predict_pixels(np.stack(originals))
    ages_b, female_b = model.predict_pixels(np.stack(recovered))
    print(json.dumps({
        "photos": args.count,
        "faces_found": args.count - missed,
        "pixel_error_median": round(float(np.median(whole)), 2),
        "pixel_error_p90": round(float(np.percentile(whole, 90)), 2),
        "central_pixel_error_median": round(float(np.median(central)), 2),
        "age_difference_mean": round(float(np.abs(ages_a - ages_b).mean()), 2),
        "age_difference_p90": round(float(np.percentile(np.abs(ages_a - ages_b), 90)), 2),
        "gender_agreement": round(float(((female_a >= 0.5) == (female_b >= 0.5)).mean()), 4),
        "model": str(model.path),
    }, indent=2))


if __name__ == "__main__":
    main()
