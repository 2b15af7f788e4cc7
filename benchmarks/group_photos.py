"""Group photos made of face chips, shared by the detector benchmarks (`detectors.py`, `face_size_recall.py`)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def group_photo(chips: list[Image.Image], face: int, size: tuple[int, int], rng: np.random.Generator,
                tilt: float | None = None):
    """A photo of `size` with the chips in a row on a textured background, and where each face's centre lies.

    Each chip is resized to `face` pixels and pasted in its own column at a random height; with `tilt`, it is
    first rotated by that angle, to the left or right at random. Without `tilt` no draw is spent on the angle,
    so a seed gives the same photos as before tilts existed.
    """
    width, height = size
    noise = rng.integers(0, 255, (height // 32, width // 32, 3), dtype=np.uint8)
    photo = Image.fromarray(noise).resize(size, Image.BICUBIC).filter(ImageFilter.GaussianBlur(3))
    step, centres = width // len(chips), []
    for index, chip in enumerate(chips):
        chip, mask = chip.resize((face, face), Image.BICUBIC), None
        if tilt is not None:
            angle = tilt * rng.choice([-1, 1])
            mask = Image.new("L", chip.size, 255).rotate(angle, expand=True)
            chip = chip.rotate(angle, Image.BICUBIC, expand=True)
        x = index * step + int(rng.integers(0, max(1, step - chip.width)))
        y = int(rng.integers(0, height - chip.height))
        photo.paste(chip, (x, y), mask)
        centres.append((x + chip.width / 2, y + chip.height / 2))
    return np.asarray(photo), centres
