"""Find faces in photos and cut them out the way UTKFace's chips were made.

UTKFace's aligned & cropped images were produced with dlib: 68-point landmarks and `get_face_chip` at
200 px with dlib's default padding of 0.2. Re-cutting 148 development chips pasted into larger canvases
with these settings reproduces them with a median error of 2.3 grey levels (5-point landmarks: 13;
padding 0.15 or 0.25: 16 and 26), so inference crops match the training crops. The detector (HOG) and
landmark model ship inside the `dlib-bin` and `face-recognition-models` packages: nothing is downloaded.

HOG finds upright, frontal faces. By default MediaPipe's BlazeFace (blazeface.py) looks too, and each face it
finds that HOG did not is turned upright by its keypoints, given dlib's 68 landmarks there, and cut out by them
as HOG's faces are (`detector="hog"` or `"blazeface"` use one of the two alone).
"""
from __future__ import annotations

import queue
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .errors import SearchTooLarge
from .images import scaled

CHIP_SIZE = 200       # UTKFace chip side in pixels
CHIP_PADDING = 0.2    # dlib get_face_chip padding that reproduces UTKFace's chips
HOG_SMALLEST_FACE = 80  # dlib's HOG window: the smallest face it finds at the scale it searches (measured: 73 px)
# Faces to look for by default, in the photo's pixels: a 4000 x 3000 phone photo searched at 1024 px missed every
# face under 290 px (faces across a table); searched at up to 2048 px it finds faces from 160 px on in 170 ms
# (full size: 80 px in 665 ms). Small photos are searched at twice their size, for faces from 40 px.
DETECT_SIDE = 2048    # longest side a photo is searched at unless asked for smaller faces (`min_face`)
UPSAMPLE_BELOW = 400  # photos whose longest side is under this are searched at twice their size
MIN_FACE = 20         # the smallest min_face accepted
MAX_SEARCH_PIXELS = 100_000_000  # a larger search (a small min_face on a large photo) is refused, not run
MIN_SCORE = 0.2       # HOG margin below which detections are dropped: the badge on the example photo's suit
                      # scores 0.07-0.13; 55 of 60 pasted faces score above 0.2 (59 above 0)
DETECTORS = ("both", "hog", "blazeface")
# A UTKFace chip is get_face_chip at CHIP_SIZE px with padding CHIP_PADDING on each side, so the face's landmark
# box is its central CHIP_SIZE / (1 + 2 x padding) px (29-171 of 200): landmarks are looked for inside that box.
_MARGIN = round(CHIP_SIZE * CHIP_PADDING / (1 + 2 * CHIP_PADDING))
CHIP_FACE_BOX = (_MARGIN, _MARGIN, CHIP_SIZE - _MARGIN, CHIP_SIZE - _MARGIN)
# Where BlazeFace puts the eyes, nose tip and mouth centre on development chips (medians over 2,993 training
# chips, each pasted into a 600 px square): a face found by BlazeFace is first warped so that its keypoints land
# here, which makes it upright and chip-sized for the landmarks.
CHIP_KEYPOINTS = np.array([[58.8, 59.4], [136.7, 61.1], [97.3, 106.8], [97.2, 141.5]])


@dataclass
class DetectedFace:
    box: list[int]              # x0, y0, x1, y1 in the photo's pixels
    landmarks: list[list[float]]  # left eye, right eye, nose tip, left and right mouth corner (image left/right)
    score: float                # detector confidence: HOG's SVM margin, or BlazeFace's probability
    chip: np.ndarray            # CHIP_SIZE x CHIP_SIZE x 3 uint8 aligned crop
    detector: str = "hog"       # which detector found it: "hog" or "blazeface"


class FaceFinder:
    """dlib's HOG face detector, BlazeFace and dlib's 68-point landmarks; aligned 200 px chips like UTKFace's.
    Safe to share between threads."""

    def __init__(self, min_score: float = MIN_SCORE, min_face: float | None = None, detector: str = "both"):
        import dlib
        import face_recognition_models

        self.detector = check_detector(detector)
        self._blazeface = None
        if detector != "hog":
            from .blazeface import BlazeFace
            self._blazeface = BlazeFace()
        self._dlib = dlib
        # dlib's detector keeps the image it scans inside it, so two threads must not share one; making one takes
        # 0.2 s, so they are kept for reuse: as many as photos were ever searched at once
        self._idle_detectors = queue.SimpleQueue()
        if detector != "blazeface":  # made now, not on the first photo; BlazeFace alone never uses one
            self._idle_detectors.put(dlib.get_frontal_face_detector())
        self._landmarks = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())  # stateless
        self.min_score = min_score
        self.min_face = check_min_face(min_face)

    @contextmanager
    def _detector(self):
        try:
            detector = self._idle_detectors.get_nowait()
        except queue.Empty:
            detector = self._dlib.get_frontal_face_detector()
        try:
            yield detector
        finally:
            self._idle_detectors.put(detector)

    def find(self, rgb: np.ndarray, min_face: float | None = None) -> list[DetectedFace]:
        """Every face in an H x W x 3 uint8 RGB image: HOG's, most confident first, then those only BlazeFace
        found, most confident first; `min_face` overrides the finder's."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        height, width = rgb.shape[:2]
        min_face = check_min_face(min_face) or self.min_face or default_min_face(max(height, width))
        faces = [] if self.detector == "blazeface" else self._find_hog(rgb, min_face)
        if self._blazeface is not None:
            for found in self._blazeface.find(rgb, min_face):
                nose = found.keypoints[2]
                if not any(f.box[0] <= nose[0] <= f.box[2] and f.box[1] <= nose[1] <= f.box[3] for f in faces):
                    face = self._cut_blazeface(rgb, found)
                    if face is not None:
                        faces.append(face)
        return faces

    def _find_hog(self, rgb: np.ndarray, min_face: float) -> list[DetectedFace]:
        height, width = rgb.shape[:2]
        scale = HOG_SMALLEST_FACE / min_face  # the searched image's size against the photo's
        if height * width * scale ** 2 > MAX_SEARCH_PIXELS:
            raise SearchTooLarge(f"looking for faces down to {min_face:g} px in a {width} x {height} photo means "
                                 f"searching {height * width * scale ** 2 / 1e6:.0f} million pixels (at most "
                                 f"{MAX_SEARCH_PIXELS / 1e6:.0f}); ask for larger faces")
        upsample = 1 if scale > 1 else 0  # enlarging: dlib's own 2x pyramid step, which its detector was made for
        resize = scale / 2 if upsample else scale
        small = rgb if resize == 1 else scaled(rgb, resize)
        with self._detector() as detector:
            rects, scores, _ = detector.run(small, upsample, self.min_score)  # boxes in `small`'s pixels
        faces = []
        for rect, score in sorted(zip(rects, scores), key=lambda pair: -pair[1]):
            box = self._dlib.rectangle(*(int(round(v / resize)) for v in (rect.left(), rect.top(),
                                                                            rect.right(), rect.bottom())))
            faces.append(self._cut(rgb, self._landmarks(rgb, box), score, "hog"))
        return faces

    def _cut_blazeface(self, rgb: np.ndarray, found) -> DetectedFace | None:
        """A face BlazeFace found, cut out as HOG's are: warped upright by its keypoints onto a chip, given
        dlib's 68 landmarks there, which are taken back into the photo to cut the face out by. None when its
        keypoints lie within a pixel of each other (no face to cut)."""
        from PIL import Image

        if np.ptp(found.keypoints[:4], axis=0).max() < 1:
            return None
        to_chip = similarity(found.keypoints[:4], CHIP_KEYPOINTS)  # photo -> chip, 2 x 3
        to_photo = np.linalg.inv(np.vstack([to_chip, [0, 0, 1]]))[:2]
        upright = Image.fromarray(rgb).transform((CHIP_SIZE, CHIP_SIZE), Image.AFFINE, to_photo.ravel().tolist(),
                                                 Image.BILINEAR)
        on_chip = self._landmarks(np.asarray(upright), self._dlib.rectangle(*CHIP_FACE_BOX))
        points = [to_photo @ (p.x, p.y, 1.0) for p in on_chip.parts()]
        x0, y0, x1, y1 = (int(round(v)) for v in found.box)
        shape = self._dlib.full_object_detection(self._dlib.rectangle(x0, y0, x1, y1),
                                                 [self._dlib.point(int(round(x)), int(round(y))) for x, y in points])
        return self._cut(rgb, shape, found.score, "blazeface")

    def _cut(self, rgb: np.ndarray, shape, score: float, detector: str) -> DetectedFace:
        """The face whose 68 landmarks are `shape`, cut out as UTKFace's chips were."""
        height, width = rgb.shape[:2]
        box = shape.rect
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=float)
        five = [points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]]
        chip = np.asarray(self._dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        return DetectedFace(
            box=[max(0, box.left()), max(0, box.top()), min(width, box.right()), min(height, box.bottom())],
            landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in five],
            score=round(float(score), 3),
            chip=chip,
            detector=detector,
        )


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 rotation, uniform scale and shift that best maps points `source` onto `target` (least squares;
    Umeyama 1991)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(dst.T @ src / len(source))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / src.var(axis=0).sum()
    return np.hstack([scale * rotation, (target_mean - scale * rotation @ source_mean)[:, None]])


def check_detector(detector: str) -> str:
    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    return detector


def check_min_face(min_face: float | None) -> float | None:
    if min_face is not None and not MIN_FACE <= min_face < float("inf"):
        raise ValueError(f"the smallest face to look for must be a number of pixels from {MIN_FACE} up (a smaller "
                         f"face has too few pixels to read an age from), not {min_face:g}")
    return min_face


def default_min_face(longest_side: int) -> float:
    """The smallest face, in pixels, looked for by default in a photo whose longest side is `longest_side`."""
    if longest_side < UPSAMPLE_BELOW:
        return HOG_SMALLEST_FACE / 2
    return HOG_SMALLEST_FACE * max(1.0, longest_side / DETECT_SIDE)
