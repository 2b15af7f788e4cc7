"""Age and gender of every face in a photo (or of ready face crops), from a trained model.

`AgeGenderModel` runs a model file (.onnx through onnxruntime, or .keras through Keras) on crops;
`Predictor` adds face detection and alignment, and is the package's public API:

    from agegender import Predictor
    faces = Predictor().predict("photo.jpg")
"""
from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import ImageError, ModelError
from .faces import check_detector, check_min_face
from .images import open_rgb

DEFAULT_MODEL = Path(__file__).parent / "weights" / "default.onnx"


def default_workers() -> int:
    """Photos searched for faces at once: one per CPU core, at most 4 (more only queue for the cores while
    holding their decoded photos in memory)."""
    return min(4, os.cpu_count() or 1)


def resolve_model_path(path: str | Path | None) -> Path:
    """A model file from a path to a file or to a run folder (its export or best checkpoint); None: the default."""
    if path is None:
        if not DEFAULT_MODEL.is_file():
            raise ModelError(f"no default model is installed at {DEFAULT_MODEL}; pass --model PATH")
        return DEFAULT_MODEL
    path = Path(path)
    if path.is_dir():
        for name in ("model.onnx", "best.keras"):
            if (path / name).is_file():
                return path / name
        raise ModelError(f"{path} holds no model (expected best.keras or model.onnx in a run folder)")
    if not path.is_file():
        raise ModelError(f"model {path} not found")
    if path.suffix not in (".keras", ".onnx"):
        raise ModelError(f"{path}: unsupported model format (expected .keras or .onnx)")
    return path


class AgeGenderModel:
    """A trained model applied to aligned face crops (RGB pixels 0-255 at the model's input size).

    An exported model may carry, in its metadata, how it is best run: `test_time_flip` (average each face
    with its mirror image), `age_interval` (calibrated offsets for an age interval) and `gender_temperature`
    (divides the gender logit); see calibration.py.
    `flip` overrides the model's own setting.
    """

    def __init__(self, model_path: str | Path | None = None, flip: bool | None = None):
        self.path = resolve_model_path(model_path)
        if self.path.suffix == ".onnx":
            from .runtime import inference_session

            try:
                self._session = inference_session(self.path)
            except Exception as error:  # noqa: BLE001 - any load failure of a foreign file
                raise ModelError(f"{self.path} is not a loadable ONNX model ({error})".splitlines()[0]) from None
            inputs = self._session.get_inputs()
            if len(inputs) != 1 or len(inputs[0].shape) != 4:
                raise ModelError(f"{self.path} takes {len(inputs)} inputs; expected one N x size x size x 3 image batch")
            self._input = inputs[0]
            self.image_size = int(self._input.shape[1])
            self._outputs = [output.name for output in self._session.get_outputs()]
            if not {"age", "gender"} <= set(self._outputs):
                raise ModelError(f"{self.path} has outputs {self._outputs}, not 'age' and 'gender'")
            self.metadata = json.loads(self._session.get_modelmeta().custom_metadata_map.get("agegender", "{}"))
        else:
            import keras

            try:
                self._model = keras.models.load_model(self.path, compile=False)
            except Exception as error:  # noqa: BLE001 - any load failure of a foreign file
                raise ModelError(f"{self.path} is not a loadable Keras model ({error})".splitlines()[0]) from None
            self.image_size = int(self._model.input_shape[1])
            self.metadata = {"name": self._model.name}
        self.flip = bool(self.metadata.get("test_time_flip", False)) if flip is None else flip
        self.age_interval = self.metadata.get("age_interval")
        self.gender_temperature = self.metadata.get("gender_temperature")

    def predict_pixels(self, pixels: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(ages, female probabilities) for N x size x size x 3 RGB pixels in 0-255."""
        outputs = self.predict_outputs(pixels, batch_size)
        return outputs["age"], outputs["gender"]

    def predict_outputs(self, pixels: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """`age` and `gender` (female probability) per face, `age_distribution` if the model has one, and
        `age_low`/`age_high` (an 80% interval) when the model carries a calibration or a distribution."""
        from .calibration import age_intervals, own_intervals, scale_gender

        if self.flip:
            # Face and mirror image in one run: a batch of two costs less than two runs of one.
            pixels = np.asarray(pixels)
            both = self._run(np.concatenate([pixels, pixels[:, :, ::-1]]), 2 * batch_size)
            outputs = {name: (values[:len(pixels)] + values[len(pixels):]) / 2 for name, values in both.items()}
        else:
            outputs = self._run(pixels, batch_size)
        if self.gender_temperature:
            outputs["gender"] = scale_gender(outputs["gender"], self.gender_temperature)
        if self.age_interval:
            outputs["age_low"], outputs["age_high"] = age_intervals(outputs["age"], self.age_interval,
                                                                    outputs.get("age_distribution"))
        elif "age_distribution" in outputs:
            outputs["age_low"], outputs["age_high"] = own_intervals(outputs["age"], outputs["age_distribution"])
        return outputs

    def _run(self, pixels: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
        parts = []
        for start in range(0, len(pixels), batch_size):
            batch = np.asarray(pixels[start:start + batch_size], dtype=np.float32)
            if self.path.suffix == ".onnx":
                outputs = dict(zip(self._outputs, self._session.run(None, {self._input.name: batch})))
            else:
                outputs = {name: np.asarray(value) for name, value in self._model(batch, training=False).items()}
            parts.append(outputs)
        if not parts:
            return {"age": np.zeros(0, np.float32), "gender": np.zeros(0, np.float32)}
        joined = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        joined["age"], joined["gender"] = joined["age"].reshape(-1), joined["gender"].reshape(-1)
        return joined

    def resize(self, crop: np.ndarray) -> np.ndarray:
        from PIL import Image

        if crop.shape[:2] == (self.image_size, self.image_size):
            return crop
        return np.asarray(Image.fromarray(crop).resize((self.image_size, self.image_size), Image.BILINEAR))


@dataclass
class Face:
    """One face: where it is, and what the model says of it."""
    face: int                            # index in its photo: HOG's faces, most confident first, then BlazeFace's
    box: list[int]                       # x0, y0, x1, y1 in the photo's pixels
    landmarks: list[list[float]] | None  # eyes, nose tip, mouth corners; None for ready crops
    detection_score: float | None        # None for ready crops
    detector: str | None                 # "hog" or "blazeface" (the score is HOG's margin or BlazeFace's probability)
    age: float
    age_low: float | None                # calibrated interval around `age` (None if the model has none):
    age_high: float | None               # the true age falls inside it for about 80% of faces
    gender: str                          # "male" or "female"
    gender_probability: float            # probability of the predicted gender
    female_probability: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PhotoResult:
    """One photo of `Predictor.predict_many`: its faces, or the error that made it unreadable."""
    source: object                       # as given: a path, file object, image or array
    photo: object                        # the decoded PIL image (None when unreadable)
    faces: list | None                   # list[Face] (None when unreadable)
    error: ImageError | None


class Predictor:
    """Photos in, faces with age and gender out. `model`: a .onnx/.keras file or run folder; None: the default.
    `min_score`: detector confidence below which a detection is dropped (None: faces.MIN_SCORE).
    `min_face`: the smallest face to look for, in the photo's pixels (None: faces.default_min_face, 80 px up to
    2048 px photos, proportionally more above; smaller costs time: a 12 MP photo takes 4x as long at 80 px).
    `flip`: average each face with its mirror image (None: as the model's metadata says; False: one pass,
    faster). `detector`: "both" (dlib's HOG and BlazeFace, which finds tilted and turned faces), "hog" or
    "blazeface" alone (faces.DETECTORS)."""

    def __init__(self, model: str | Path | None = None, min_score: float | None = None, flip: bool | None = None,
                 min_face: float | None = None, detector: str = "both"):
        self.model = AgeGenderModel(model, flip=flip)
        self.min_score = min_score
        self.min_face = check_min_face(min_face)  # before any photo: dlib loads only when one needs detection
        self.detector = check_detector(detector)
        self._finder = None

    @property
    def finder(self):
        if self._finder is None:  # dlib loads only when a photo needs detection
            from .faces import MIN_SCORE, FaceFinder

            self._finder = FaceFinder(MIN_SCORE if self.min_score is None else self.min_score, self.min_face,
                                      self.detector)
        return self._finder

    def predict(self, image, aligned: bool = False, min_face: float | None = None) -> list[Face]:
        """Faces in `image` (a path, file object, or H x W x 3 RGB array). With `aligned`, the image is
        taken as one ready face crop like UTKFace's. `min_face` overrides the predictor's for this image."""
        return self._label(*self._find(open_rgb(image), aligned, min_face))

    def predict_many(self, images: Iterable, aligned: bool = False, min_face: float | None = None,
                     workers: int | None = None) -> Iterator[PhotoResult]:
        """One PhotoResult per image, in order, as each is done. Decoding, detection and alignment run in
        `workers` threads (None: one per CPU core, at most 4), which dlib and Pillow let run in parallel; the
        model runs in the calling thread, which its own threads already spread over the cores."""
        workers = workers or default_workers()
        if not aligned:
            self.finder  # loaded once, before the threads share it

        def find(source):  # in a worker thread
            try:
                photo = open_rgb(source)
                return source, photo, self._find(photo, aligned, min_face), None
            except ImageError as error:
                return source, None, None, error

        def finish(source, photo, found, error) -> PhotoResult:  # in the calling thread
            return PhotoResult(source, photo, None if error else self._label(*found), error)

        pool, pending = ThreadPoolExecutor(workers), deque()
        try:
            for source in images:
                pending.append(pool.submit(find, source))
                if len(pending) > 2 * workers:  # a few photos ahead, never the whole folder in memory
                    yield finish(*pending.popleft().result())
            while pending:
                yield finish(*pending.popleft().result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def predict_video(self, video, every: float = 0.5, min_face: float | None = None, workers: int | None = None):
        """A `video.VideoResult` for a video file (path or file object; needs the `video` extra): iterate it for the
        frames sampled `every` seconds (0: every frame), each face numbered by person; then `.people` holds one
        age and gender per person from all their frames. Frames are searched for faces in `workers` threads."""
        from .video import VideoResult

        return VideoResult(self, video, every, min_face, workers)

    def _find(self, photo, aligned: bool, min_face: float | None):
        """The crops to read, with their boxes, landmarks and detection scores."""
        rgb = np.asarray(photo)
        if aligned:
            height, width = rgb.shape[:2]
            return [self.model.resize(rgb)], [[0, 0, width, height]], [None], [None], [None]
        found = self.finder.find(rgb, min_face)
        return ([self.model.resize(f.chip) for f in found], [f.box for f in found], [f.landmarks for f in found],
                [f.score for f in found], [f.detector for f in found])

    def _label(self, crops, boxes, landmarks, scores, detectors) -> list[Face]:
        if not crops:
            return []
        outputs = self.model.predict_outputs(np.stack(crops))
        ages, females = outputs["age"], outputs["gender"]
        lows, highs = outputs.get("age_low", [None] * len(ages)), outputs.get("age_high", [None] * len(ages))
        faces = []
        for index, (box, points, score, detector, age, low, high, female) in enumerate(
                zip(boxes, landmarks, scores, detectors, ages, lows, highs, females)):
            female = float(female)
            faces.append(Face(face=index, box=box, landmarks=points, detection_score=score, detector=detector,
                              age=round(float(age), 1), age_low=None if low is None else round(float(low), 1),
                              age_high=None if high is None else round(float(high), 1),
                              gender="female" if female >= 0.5 else "male",
                              gender_probability=round(max(female, 1 - female), 4),
                              female_probability=round(female, 4)))
        return faces
