"""Distillation from dlib's face-recognition embedding: the teacher file, training towards it, and an export
that leaves the extra output out."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from agegender.cli import main
from agegender.data import read_dataset
from agegender.errors import DataError
from agegender.teacher import DIMENSIONS, load_teacher_embeddings

from conftest import write_utkface_folder


def test_the_teacher_command_embeds_every_image_and_the_file_is_matched_by_path(tmp_path, monkeypatch):
    folder = tmp_path / "faces"
    write_utkface_folder(folder, 6, seed=3)
    (folder / "9_0_0_20170110000000001.jpg.chip.jpg").write_bytes(b"not a jpeg")  # unreadable: zeros, no crash
    out = tmp_path / "teacher.npz"
    assert main(["teacher", "--data", str(folder), "--out", str(out), "--workers", "1"]) == 0

    paths = read_dataset(folder)["path"].tolist()
    vectors = load_teacher_embeddings(out, paths)
    assert vectors.shape == (7, DIMENSIONS) and np.isfinite(vectors).all()
    readable = [not p.endswith("0000000001.jpg.chip.jpg") for p in paths]
    assert (np.linalg.norm(vectors[readable], axis=1) > 0.1).all()  # dlib's descriptors are far from zero
    assert len({tuple(v) for v in vectors[readable].round(4)}) == sum(readable)  # one per face, not one for all
    # Matched by resolved path: relative paths in another order find the same rows.
    monkeypatch.chdir(folder)
    shuffled = [os.path.basename(p) for p in reversed(paths)]
    assert np.array_equal(load_teacher_embeddings(out, shuffled), vectors[::-1])

    with pytest.raises(DataError, match="1 images have no embedding .*make it for this dataset"):
        load_teacher_embeddings(out, [*paths, str(tmp_path / "elsewhere.jpg")])
    (tmp_path / "broken.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a teacher embeddings file"):
        load_teacher_embeddings(tmp_path / "broken.npz", paths)


def gender_teacher(frame: pd.DataFrame, path, seed: int = 0):
    """Synthetic teacher embeddings that carry the gender, as dlib's carry identity."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=DIMENSIONS)
    signs = np.where(frame["gender"].to_numpy() == 1, 1.0, -1.0)[:, None]
    vectors = 1.3 + signs * direction * 0.1 + rng.normal(scale=0.02, size=(len(frame), DIMENSIONS))
    np.savez(path, paths=np.array([os.path.abspath(p) for p in frame["path"]]), embeddings=vectors.astype("f4"))
    return path


def test_a_distilled_run_learns_the_teacher_from_a_warm_start_and_exports_only_age_and_gender(
        tmp_path, trained_run, utk_folder):
    import onnx

    from agegender.predictor import AgeGenderModel
    from agegender.recipes import get_recipe
    from agegender.train import train

    teacher = gender_teacher(read_dataset(utk_folder), tmp_path / "teacher.npz")
    recipe = get_recipe("seed-a").with_overrides(image_size=32, batch_size=16, teacher_embeddings=str(teacher))
    out = tmp_path / "distilled"
    train(recipe, str(utk_folder), out, overrides={"epochs": 3, "loss_weights": {"gender": 1, "age": 1,
                                                                                  "embedding": 5}},
          verbose=0, init_from=trained_run)

    config = json.loads((out / "config.json").read_text())
    assert config["fresh_layers"] == ["embedding"]  # everything else starts from the earlier run
    history = pd.read_csv(out / "history.csv")
    # The loss is minus the cosine with the centred teacher: about 0 for an output that has not learnt it (the
    # centred targets point one way for women and the opposite way for men), near -1 once it has. Read at the
    # best epoch: on 32 validation images, with BatchNorm's moving statistics still far from settled after so
    # few steps, the last epoch can fall back (measured: 2 final epochs of 24 runs at -0.56 and -0.77, after
    # -0.93 and -0.90; every run's best epoch at -0.90 or lower).
    assert history["val_embedding_loss"].min() < -0.8
    graph = onnx.load(str(out / "model.onnx"))
    assert sorted(o.name for o in graph.graph.output) == ["age", "gender"]
    ages, females = AgeGenderModel(out / "model.onnx").predict_pixels(np.zeros((2, 32, 32, 3), "float32"))
    assert ages.shape == females.shape == (2,)


def test_a_teacher_file_that_lacks_training_images_is_refused_before_any_folder_is_made(tmp_path, utk_folder):
    from agegender.recipes import get_recipe
    from agegender.train import train

    frame = read_dataset(utk_folder)
    teacher = gender_teacher(frame.iloc[:100], tmp_path / "partial.npz")
    recipe = get_recipe("seed-a").with_overrides(image_size=32, teacher_embeddings=str(teacher))
    with pytest.raises(DataError, match="have no embedding"):
        train(recipe, str(utk_folder), tmp_path / "run", overrides={"epochs": 1}, verbose=0)
    assert not (tmp_path / "run").exists()


def teacher_outputs(frame: pd.DataFrame, path, female_probability: float, age: float):
    """A teacher file that says the same female probability and age for every image."""
    np.savez(path, paths=np.array([os.path.abspath(p) for p in frame["path"]]),
             female_probability=np.full(len(frame), female_probability, "f4"), age=np.full(len(frame), age, "f4"))
    return path


def test_teacher_outputs_blend_into_the_training_targets_only(tmp_path, utk_folder):
    from agegender.recipes import get_recipe
    from agegender.train import _training_targets

    frame = read_dataset(utk_folder)
    teacher = teacher_outputs(frame, tmp_path / "teacher.npz", female_probability=0.8, age=50.0)
    rows = frame.iloc[:4]
    recipe = get_recipe("seed-a").with_overrides(teacher_outputs=str(teacher), teacher_output_weight=0.25)
    ages, genders = _training_targets(recipe, rows)
    assert np.allclose(ages, 0.75 * rows["age"] + 0.25 * 50.0)
    assert np.allclose(genders, 0.75 * rows["gender"] + 0.25 * 0.8)
    plain_ages, plain_genders = _training_targets(get_recipe("seed-a"), rows)
    assert np.array_equal(plain_ages, rows["age"]) and np.array_equal(plain_genders, rows["gender"])


def test_a_run_with_soft_targets_reports_accuracy_against_their_side_of_one_half(tmp_path, utk_folder):
    from agegender.recipes import get_recipe
    from agegender.train import train

    teacher = teacher_outputs(read_dataset(utk_folder), tmp_path / "teacher.npz", female_probability=0.5, age=40.0)
    out = tmp_path / "run"
    recipe = get_recipe("seed-a").with_overrides(image_size=32, batch_size=16, teacher_outputs=str(teacher))
    train(recipe, str(utk_folder), out, overrides={"epochs": 2}, verbose=0)
    history = pd.read_csv(out / "history.csv")
    # Soft targets (0.25 for men, 0.75 for women here) never equal a thresholded prediction, so a plain binary
    # accuracy would read 0 for every epoch; against their side of 0.5 it reads like the labels' accuracy.
    assert history["gender_accuracy"].iloc[-1] > 0.6
    assert history["val_gender_accuracy"].notna().all()


def test_a_teacher_outputs_file_without_the_training_images_is_refused_before_any_folder(tmp_path, utk_folder):
    from agegender.recipes import get_recipe
    from agegender.train import train

    teacher = teacher_outputs(read_dataset(utk_folder).iloc[:10], tmp_path / "partial.npz", 0.5, 30.0)
    recipe = get_recipe("seed-a").with_overrides(image_size=32, teacher_outputs=str(teacher))
    with pytest.raises(DataError, match="have no output in .*teacher_outputs.py"):
        train(recipe, str(utk_folder), tmp_path / "run", overrides={"epochs": 1}, verbose=0)
    assert not (tmp_path / "run").exists()
