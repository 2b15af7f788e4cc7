"""dlib's face-recognition embedding of face chips: the teacher that a model can be distilled from.

dlib's ResNet (shipped in `face-recognition-models`) maps a face to 128 numbers. Linear models on them alone
reach 92% gender accuracy on UTKFace validation faces, and they add to a trained model's own estimates
(benchmarks/face_embedding_features.py), but at about 63 ms per face they are too slow to run at inference.
A recipe with `teacher_embeddings` trains an extra output to reproduce them instead (feature distillation),
so the backbone learns what they carry and inference pays nothing: the ONNX export leaves that output out.
"""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .errors import DataError, output_file
from .faces import CHIP_FACE_BOX, CHIP_SIZE

DIMENSIONS = 128
_models = {}


def embed_chips(paths: list[str]) -> tuple[np.ndarray, float]:
    """The embedding of each face chip (zeros for an unreadable one) and the seconds per face."""
    import dlib
    import face_recognition_models
    from PIL import Image

    if not _models:
        _models["landmarks"] = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        _models["net"] = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    box, out = dlib.rectangle(*CHIP_FACE_BOX), np.zeros((len(paths), DIMENSIONS), np.float32)
    start = time.perf_counter()
    for row, path in enumerate(paths):
        try:
            rgb = np.asarray(Image.open(path).convert("RGB").resize((CHIP_SIZE, CHIP_SIZE)))
        except OSError:
            continue
        out[row] = np.asarray(_models["net"].compute_face_descriptor(rgb, _models["landmarks"](rgb, box)))
    return out, (time.perf_counter() - start) / max(1, len(paths))


def write_teacher_embeddings(paths: list[str], out: str | Path, workers: int = 2) -> Path:
    """Embed every chip in `paths` (in `workers` processes) into `out`, an .npz of paths and embeddings."""
    out = output_file(out, "teacher.npz")  # refused before the embedding's minutes, not after
    chunks = [paths[i:i + 500] for i in range(0, len(paths), 500)]
    with ProcessPoolExecutor(max(1, workers)) as pool:
        vectors = np.concatenate([part[0] for part in pool.map(embed_chips, chunks)] or
                                 [np.zeros((0, DIMENSIONS), np.float32)])
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.npz")
    np.savez(partial, paths=np.array([str(Path(p).resolve()) for p in paths]), embeddings=vectors)
    partial.replace(out)
    return out


def _load_by_path(source: str | Path, paths: list[str], keys: tuple[str, ...], kind: str, item: str,
                  make: str) -> list[np.ndarray]:
    """The arrays `keys` of an .npz with a `paths` array, rows matched to `paths` by resolved path; `kind`,
    `item` and `make` name the file, one of its entries and the command that makes it, for the errors."""
    source = Path(source)
    try:
        stored = np.load(source, allow_pickle=False)
        index = {str(Path(p).resolve()): row for row, p in enumerate(stored["paths"].tolist())}
        arrays = [stored[key] for key in keys]
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{source} is not a {kind} file ({type(error).__name__}); make one with: {make}") from None
    rows = [index.get(str(Path(p).resolve())) for p in paths]
    missing = [p for p, row in zip(paths, rows) if row is None]
    if missing:
        raise DataError(f"{len(missing)} images have no {item} in {source} "
                        f"(e.g. {Path(missing[0]).name}); make it for this dataset with: {make}")
    return [np.asarray(array[rows], np.float32) for array in arrays]


def load_teacher_embeddings(source: str | Path, paths: list[str]) -> np.ndarray:
    """The stored embedding of each image in `paths` (matched by resolved path), in that order."""
    return _load_by_path(source, paths, ("embeddings",), "teacher embeddings", "embedding",
                         "agegender teacher --data DATA --out FILE.npz")[0]


def load_teacher_outputs(source: str | Path, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The stored (female probability, age) of each image in `paths`: other models' outputs to learn from."""
    female, age = _load_by_path(source, paths, ("female_probability", "age"), "teacher outputs", "output",
                                "python benchmarks/teacher_outputs.py MODEL [MODEL ...] --data DATA --out FILE.npz")
    return female, age
