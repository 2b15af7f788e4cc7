"""MediaPipe's BlazeFace detectors through onnxruntime: faces that dlib's HOG detector misses.

HOG looks for upright, frontal faces: tilted by 50 degrees, pasted development faces are found 1 time in 10
(benchmarks/detectors.py). BlazeFace (Bazarevsky et al. 2019; MediaPipe's models, Apache-2.0) was trained on
turned and tilted faces and gives six keypoints (eyes, nose tip, mouth centre, ears), which is enough to cut the
face out upright. Two models are used, both on the whole photo: the full-range one (192 px input) sees faces
from about a tenth to six tenths of the photo's side, the short-range one (128 px) the larger ones of selfies.
Smaller faces are looked for in overlapping tiles, each eight times the smallest face asked for.

The models ship in src/agegender/weights (weights/DETECTORS.md says where from and how they were converted).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelError
from .images import scaled

WEIGHTS = Path(__file__).parent / "weights"
MIN_SCORE = 0.6           # MediaPipe uses 0.5; in 600 of benchmarks/detectors.py's photos (textured backgrounds)
                          # 19 false faces score 0.5-0.6 and none above, and 3% of the true ones
OVERLAP = 0.3             # detections overlapping more than this (intersection over union) are one face
FACE_SHARE = 8            # a tile's side is this many times the smallest face looked for in it (6: 80 px faces
                          # found 77% of the time, not 62%, with 11 false faces in those 600 photos, not 0)
SMALLEST = 0.75           # faces narrower than this share of the smallest face asked for are dropped: at the
                          # default 80 px most false faces are 40-50 px wide, and true ones 68-83
RAW_SCORE_LIMIT = 80.0    # logits clipped before the sigmoid, as MediaPipe does


@dataclass
class Detection:
    box: np.ndarray        # x0, y0, x1, y1 in the photo's pixels
    keypoints: np.ndarray  # 6 x 2: image-left eye, image-right eye, nose tip, mouth centre, left and right ear
    score: float           # the model's probability that this is a face


class _Model:
    """One BlazeFace network: a square input of `size` px and its SSD anchors (centres only; fixed size)."""

    def __init__(self, path: Path, size: int, grids: tuple[tuple[int, int], ...]):
        from .runtime import inference_session

        try:
            # One thread: a few milliseconds a call, so more threads cost more than they save.
            self.session = inference_session(path, threads=1)
        except Exception as error:  # noqa: BLE001 - a missing or damaged file, whatever onnxruntime calls it
            raise ModelError(f"BlazeFace's model {path} cannot be loaded ({error}".splitlines()[0] + "); reinstall "
                             "agegender, or search with dlib's HOG detector alone (--detector hog)") from None
        self.size = size
        centres = []
        for cells, per_cell in grids:  # (cells per side, anchors per cell)
            line = (np.arange(cells) + 0.5) / cells
            y, x = np.meshgrid(line, line, indexing="ij")
            centres.append(np.repeat(np.stack([x.ravel(), y.ravel()], axis=1), per_cell, axis=0))
        self.anchors = np.concatenate(centres).astype(np.float32)

    def detect(self, part: np.ndarray, scale: float, left: float, top: float, min_score: float) -> list[Detection]:
        """The faces in `part` (at most the input's size: a piece of the photo resized by `scale`, whose top-left
        corner is at left, top in the photo), in the photo's pixels."""
        square = np.zeros((self.size, self.size, 3), np.float32)
        square[:part.shape[0], :part.shape[1]] = part
        raw, logits = self.session.run(None, {"input": square[None] / 127.5 - 1.0})
        logits = np.clip(logits[0, :, 0], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores > min_score
        raw, scores, anchors = raw[0][keep] / self.size, scores[keep], self.anchors[keep]
        centre, half = raw[:, :2] + anchors, raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        to_photo = self.size / scale  # from the input's 0-1 coordinates
        return [Detection(box * to_photo + [left, top, left, top], keypoints * to_photo + [left, top], float(s))
                for box, keypoints, s in zip(boxes, points, scores) if box[2] > box[0] and box[3] > box[1]]


class BlazeFace:
    """Both BlazeFace models; `find` searches a photo for faces from `min_face` px up. Safe to share between
    threads (onnxruntime sessions are)."""

    def __init__(self, min_score: float = MIN_SCORE):
        self.min_score = min_score
        self.full_range = _Model(WEIGHTS / "blazeface_full_range.onnx", 192, ((48, 1),))
        self.short_range = _Model(WEIGHTS / "blazeface_short_range.onnx", 128, ((16, 2), (8, 6)))

    def find(self, rgb: np.ndarray, min_face: float) -> list[Detection]:
        """Every face from about `min_face` px up, most confident first."""
        height, width = rgb.shape[:2]
        size, found = self.full_range.size, []
        small, scale = rgb, 1.0
        for window in reversed(tile_sides(max(height, width), min_face)):
            # each level resized once for all its tiles (which overlap), from the finer level before it
            small, scale = scaled(small, size / window / scale), size / window
            for left, top in tile_corners(width, height, window):
                x, y = round(left * scale), round(top * scale)
                found += self.full_range.detect(small[y:y + size, x:x + size], scale, x / scale, y / scale,
                                                self.min_score)
        whole = self.short_range.size / max(height, width)
        found += self.short_range.detect(scaled(small, whole / scale), whole, 0, 0, self.min_score)
        return [face for face in merge(found) if face.box[2] - face.box[0] >= SMALLEST * min_face]


def tile_sides(longest_side: int, min_face: float) -> list[int]:
    """The sides of the square tiles searched, largest first: the whole photo, then tiles a quarter as large
    (each level finds faces from about 1/8 to 1/2 of its side) down to FACE_SHARE x min_face."""
    sides = [longest_side]
    while sides[-1] > FACE_SHARE * min_face:
        sides.append(max(round(FACE_SHARE * min_face), sides[-1] // 4))
    return sides


def tile_corners(width: int, height: int, window: int) -> list[tuple[int, int]]:
    """Top-left corners of `window`-sided tiles covering the photo, half a tile apart, the last at the edge."""
    def starts(length: int) -> list[int]:
        if length <= window:
            return [0]
        points = list(range(0, length - window, window // 2))
        return points + [length - window]
    return [(left, top) for top in starts(height) for left in starts(width)]


def merge(detections: list[Detection]) -> list[Detection]:
    """MediaPipe's weighted non-maximum suppression: overlapping detections become one, their boxes and
    keypoints averaged by score; most confident first."""
    detections = sorted(detections, key=lambda d: -d.score)
    merged, taken = [], [False] * len(detections)
    boxes = np.array([d.box for d in detections]).reshape(-1, 4)
    for index, best in enumerate(detections):
        if taken[index]:
            continue
        group = [other for other in range(index, len(detections))
                 if not taken[other] and overlap(best.box, boxes[other]) > OVERLAP]
        weights = np.array([detections[other].score for other in group])[:, None]
        for other in group:
            taken[other] = True
        merged.append(Detection(
            box=(boxes[group] * weights).sum(axis=0) / weights.sum(),
            keypoints=(np.stack([detections[other].keypoints for other in group]) * weights[:, :, None]).sum(axis=0)
            / weights.sum(),
            score=best.score))
    return merged


def overlap(a, b) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))
