"""Shared fixtures: small synthetic face-like datasets, so the core suite needs no ../shared."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared"
UTKFACE = SHARED / "datasets" / "utkface"
XCEPTION_WEIGHTS = SHARED / "weights" / "xception_imagenet_notop.weights.h5"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
# Weights of one Xception middle-flow block: three separable convolutions and their BatchNorms.
XCEPTION_MIDDLE_BLOCK_PARAMETERS = 3 * (728 * 9 + 728 * 728 + 4 * 728)


@pytest.fixture(scope="session", autouse=True)
def _deterministic_training():
    """TensorFlow on a CPU sums in an order that depends on thread timing, so two trainings of the same tiny run
    differ (measured: one face's age 54.8 in one, 56.5 in the other; once, a run whose age output had died for
    most faces). With deterministic ops every run of the suite trains the same models on a given machine."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(0)  # deterministic ops refuse to run unseeded: a test run alone must not depend on another


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("AGEGENDER_CACHE", str(tmp_path_factory.getbasetemp() / "crop-cache"))


def synthetic_face(age: int, gender: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A learnable stand-in for a face: gender sets the colour of a disc, age its brightness and size."""
    y, x = np.mgrid[:size, :size]
    radius = size * (0.2 + 0.2 * age / 90)
    disc = (x - size / 2) ** 2 + (y - size / 2) ** 2 < radius ** 2
    image = rng.integers(0, 40, (size, size, 3))
    colour = np.array([200, 60, 60]) if gender == 0 else np.array([60, 60, 200])
    image[disc] = colour * (0.4 + 0.6 * age / 90)
    return image.clip(0, 255).astype(np.uint8)


def write_utkface_folder(folder: Path, count: int, seed: int = 0) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = []
    for index in range(count):
        age, gender, race = int(rng.integers(1, 90)), int(rng.integers(0, 2)), int(rng.integers(0, 5))
        name = f"{age}_{gender}_{race}_2017011{index:09d}.jpg.chip.jpg"
        Image.fromarray(synthetic_face(age, gender, rng)).save(folder / name, quality=95)
        labels.append((age, gender, race))
    return labels


@pytest.fixture(scope="session")
def utk_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("utk") / "images"
    write_utkface_folder(folder, 160)
    return folder


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, utk_folder) -> Path:
    """A tiny Model A run (32 px, 4 epochs) that the prediction and evaluation tests share."""
    from agegender.recipes import get_recipe
    from agegender.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    os.environ["AGEGENDER_CACHE"] = str(tmp_path_factory.getbasetemp() / "crop-cache")
    recipe = get_recipe("seed-a").with_overrides(image_size=32, batch_size=16)
    train(recipe, str(utk_folder), out, overrides={"epochs": 4}, verbose=0)
    return out


@pytest.fixture(scope="session")
def tiny_onnx(trained_run, tmp_path_factory) -> Path:
    from agegender.export import export_onnx

    return export_onnx(trained_run, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def write_video(path, frames, rate=10, rotation=0, codec="libx264", pixels="yuv420p"):
    """A video file (H.264 by default; the `video` extra) with a key frame every 5 frames and its index first, so that
    a cut copy still decodes."""
    import av

    container = av.open(str(path), "w", options={"movflags": "+faststart"} if str(path).endswith(".mp4") else {})
    stream = container.add_stream(codec, rate=rate, options={"x265-params": "log-level=error"})
    stream.width, stream.height, stream.pix_fmt, stream.gop_size = frames[0].width, frames[0].height, pixels, 5
    if rotation:
        stream.set_display_rotation(rotation)
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_image(frame).reformat(format=pixels)):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def panning(count=30, width=400, height=400):
    """The example photo seen by a camera that pans slowly across it: one person, moving in the frame."""
    photo = Image.open(EXAMPLE).convert("RGB")
    return [photo.crop((2 * i, 2 * i, 2 * i + width, 2 * i + height)) for i in range(count)]


def interrupt_search(monkeypatch, at: int) -> list:
    """Ctrl-C while the `at`-th photo or video frame is searched for faces (the earlier ones are searched as usual);
    returns the list of images searched, to be cleared between runs."""
    from agegender.predictor import Predictor

    real_find, seen = Predictor._find, []

    def find_then_interrupt(self, photo, aligned, min_face):
        seen.append(photo)
        if len(seen) == at:
            raise KeyboardInterrupt
        return real_find(self, photo, aligned, min_face)

    monkeypatch.setattr(Predictor, "_find", find_then_interrupt)
    return seen
