"""Predictor: face crops in, age and gender out, from a trained Keras model (.keras) or its ONNX export."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .images import ImageError, load_crop


class ModelError(ValueError):
    """A model path that cannot be loaded; the message says what is expected."""


@dataclass
class FacePrediction:
    file: str
    age: float
    gender: str
    gender_probability: float  # probability of the predicted gender
    female_probability: float

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_model_path(path: str | Path) -> Path:
    """A model file from a path to a file or to a run folder (its best checkpoint)."""
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


class CropPredictor:
    """Runs a model on aligned face crops (like UTKFace's chips)."""

    def __init__(self, model_path: str | Path):
        self.path = resolve_model_path(model_path)
        if self.path.suffix == ".onnx":
            import onnxruntime

            try:
                self._session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            except Exception as error:  # noqa: BLE001 - any load failure of a foreign file
                raise ModelError(f"{self.path} is not a loadable ONNX model ({error})".splitlines()[0]) from None
            self._input = self._session.get_inputs()[0]
            self.image_size = int(self._input.shape[1])
            self._outputs = [output.name for output in self._session.get_outputs()]
            meta = self._session.get_modelmeta().custom_metadata_map
            self.metadata = json.loads(meta.get("agegender", "{}"))
        else:
            import keras

            try:
                self._model = keras.models.load_model(self.path, compile=False)
            except Exception as error:  # noqa: BLE001 - any load failure of a foreign file
                raise ModelError(f"{self.path} is not a loadable Keras model ({error})".splitlines()[0]) from None
            self.image_size = int(self._model.input_shape[1])
            self.metadata = {"name": self._model.name}

    def predict_pixels(self, pixels: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(ages, female probabilities) for N x size x size x 3 RGB pixels in 0-255."""
        ages, females = [], []
        for start in range(0, len(pixels), batch_size):
            batch = np.asarray(pixels[start:start + batch_size], dtype=np.float32)
            if self.path.suffix == ".onnx":
                outputs = dict(zip(self._outputs, self._session.run(None, {self._input.name: batch})))
            else:
                outputs = {name: np.asarray(value) for name, value in self._model(batch, training=False).items()}
            ages.append(outputs["age"].reshape(-1))
            females.append(outputs["gender"].reshape(-1))
        if not ages:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return np.concatenate(ages), np.concatenate(females)

    def predict_files(self, files: list[str]) -> tuple[list[FacePrediction], list[str]]:
        """Predictions for readable crops, and one error line per file that could not be read."""
        crops, names, errors = [], [], []
        for file in files:
            try:
                crops.append(load_crop(file, self.image_size))
                names.append(str(file))
            except ImageError as error:
                errors.append(str(error))
        ages, females = self.predict_pixels(np.stack(crops)) if crops else ([], [])
        return [make_prediction(name, age, female) for name, age, female in zip(names, ages, females)], errors


def make_prediction(file: str, age: float, female: float) -> FacePrediction:
    female = float(female)
    gender = "female" if female >= 0.5 else "male"
    return FacePrediction(file=file, age=round(float(age), 1), gender=gender,
                          gender_probability=round(max(female, 1 - female), 4),
                          female_probability=round(female, 4))
