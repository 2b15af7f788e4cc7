"""Averaging exported models into one ONNX file (agegender average)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from agegender.cli import main
from agegender.ensemble import average_models
from agegender.predictor import AgeGenderModel, ModelError


@pytest.fixture(scope="module")
def untrained_onnx(tmp_path_factory):
    """An untrained Model A at 48 px: a second member that disagrees with the tiny trained one."""
    import keras

    from agegender.export import export_onnx
    from agegender.models import build_model
    from agegender.recipes import get_recipe

    keras.utils.set_random_seed(3)
    folder = tmp_path_factory.mktemp("untrained")
    model = build_model(get_recipe("seed-a").with_overrides(image_size=48), mean=np.full(3, 100.0),
                        variance=np.full(3, 900.0))
    model.save(folder / "untrained.keras")
    return export_onnx(folder / "untrained.keras", folder / "untrained.onnx")


def _float32_logit(probability: np.ndarray) -> np.ndarray:
    """The graph's log-odds, in float32 as it computes them: for a saturated output they depend on where the
    clip's 1 - 1e-7 rounds (0.99999988 in float32), 0.17 away from calibration.logit's float64 value."""
    clipped = np.clip(probability.astype(np.float32), np.float32(1e-7), np.float32(1 - 1e-7))
    return np.log(clipped) - np.log(np.float32(1) - clipped)


def _expected(members: list[AgeGenderModel], pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    outputs = [member.predict_outputs(pixels[:, :member.image_size, :member.image_size]) for member in members]
    odds = np.mean([_float32_logit(output["gender"]) for output in outputs], axis=0)
    return np.mean([output["age"] for output in outputs], axis=0), 1 / (1 + np.exp(-odds))


def test_the_average_of_two_models_is_their_mean_log_odds_and_mean_age(tiny_onnx, tmp_path):
    out = average_models([tiny_onnx, tiny_onnx], tmp_path / "same.onnx")
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    tiny = AgeGenderModel(tiny_onnx, flip=False).predict_outputs(pixels)
    averaged = AgeGenderModel(out, flip=False)
    assert averaged.image_size == 32
    result = averaged.predict_outputs(pixels)
    assert np.allclose(result["age"], tiny["age"], atol=1e-4)
    assert np.allclose(result["gender"], np.clip(tiny["gender"], 1e-7, 1 - 1e-7), atol=1e-5)


def test_members_of_different_sizes_read_one_face_resized_in_the_graph(tiny_onnx, untrained_onnx, tmp_path):
    out = average_models([tiny_onnx, untrained_onnx], tmp_path / "pair.onnx")
    averaged = AgeGenderModel(out, flip=False)
    assert averaged.image_size == 48  # the largest member's size; the 32 px member gets the batch resized
    # Faces of one colour look the same at any size, so each member's own output is known exactly.
    colours = np.array([[200, 60, 60], [60, 60, 200], [120, 120, 120], [10, 240, 90]], "float32")
    pixels = np.broadcast_to(colours[:, None, None, :], (4, 48, 48, 3)).copy()
    members = [AgeGenderModel(path, flip=False) for path in (tiny_onnx, untrained_onnx)]
    ages, females = _expected(members, pixels)
    result = averaged.predict_outputs(pixels)
    assert np.allclose(result["age"], ages, atol=1e-3) and np.allclose(result["gender"], females, atol=1e-5)
    # Not one member's output: the two differ, and the average lies between them.
    alone = [member.predict_outputs(pixels[:, :member.image_size, :member.image_size]) for member in members]
    assert np.abs(alone[0]["age"] - alone[1]["age"]).max() > 1
    assert np.all(result["age"] >= np.minimum(alone[0]["age"], alone[1]["age"]) - 1e-3)

    info = averaged.metadata
    assert info["image_size"] == 48 and [member["file"] for member in info["members"]] == ["tiny.onnx", "untrained.onnx"]
    assert "gender_temperature" not in info and "age_interval" not in info  # members' calibrations do not carry over


def test_weights_make_one_member_count_more_for_each_output_apart(tiny_onnx, untrained_onnx, tmp_path):
    out = average_models([tiny_onnx, untrained_onnx], tmp_path / "weighted.onnx", gender_weights=[1, 1],
                         age_weights=[0.7, 2.1])  # scaled to 0.25 and 0.75
    colours = np.array([[200, 60, 60], [60, 60, 200], [10, 240, 90]], "float32")
    pixels = np.broadcast_to(colours[:, None, None, :], (3, 48, 48, 3)).copy()
    members = [AgeGenderModel(path, flip=False) for path in (tiny_onnx, untrained_onnx)]
    alone = [member.predict_outputs(pixels[:, :member.image_size, :member.image_size]) for member in members]
    averaged = AgeGenderModel(out, flip=False)
    result = averaged.predict_outputs(pixels)
    assert np.allclose(result["age"], 0.25 * alone[0]["age"] + 0.75 * alone[1]["age"], atol=1e-3)
    assert not np.allclose(result["age"], (alone[0]["age"] + alone[1]["age"]) / 2, atol=0.1)
    _, equal_gender = _expected(members, pixels)  # gender weights equal: the plain mean log-odds
    assert np.allclose(result["gender"], equal_gender, atol=1e-5)
    assert [(m["gender_weight"], m["age_weight"]) for m in averaged.metadata["members"]] == [(0.5, 0.25), (0.5, 0.75)]


def test_weights_that_do_not_fit_the_models_are_refused_in_one_line(tiny_onnx, untrained_onnx, tmp_path, capsys):
    models = [str(tiny_onnx), str(untrained_onnx)]
    assert main(["average", *models, "--age-weights", "1", "2", "3", "--out", str(tmp_path / "a.onnx")]) == 2
    error = capsys.readouterr().err
    assert "3 age weights for 2 models" in error and len(error.strip().splitlines()) == 1
    assert main(["average", *models, "--gender-weights", "0", "0", "--out", str(tmp_path / "b.onnx")]) == 2
    assert "not all zero" in capsys.readouterr().err
    assert main(["average", *models, "--age-weights", "nan", "1", "--out", str(tmp_path / "c.onnx")]) == 2
    assert "numbers of zero or more" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("a.onnx", "b.onnx", "c.onnx"))


def test_an_average_is_made_calibrated_and_evaluated_from_the_command_line(tiny_onnx, untrained_onnx, utk_folder,
                                                                            tmp_path, capsys):
    out = tmp_path / "pair.onnx"
    assert main(["average", str(tiny_onnx), str(untrained_onnx), "--out", str(out)]) == 0
    assert "calibrate it" in capsys.readouterr().out
    rows = ["--data", str(utk_folder), "--protocol", "full"]
    assert main(["calibrate", str(out), *rows, "--no-flip"]) == 0
    temperature = json.loads(capsys.readouterr().out)["gender_temperature"]
    assert AgeGenderModel(out).gender_temperature == temperature
    assert main(["evaluate", str(out), *rows, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["n"] > 0


def test_averaging_refuses_one_model_and_foreign_files_in_one_line(tiny_onnx, trained_run, tmp_path, capsys):
    with pytest.raises(ValueError, match="at least two models"):
        average_models([tiny_onnx], tmp_path / "one.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    assert main(["average", str(tiny_onnx), str(junk), "--out", str(tmp_path / "out.onnx")]) == 2
    error = capsys.readouterr().err
    assert "is not a loadable ONNX model" in error and len(error.strip().splitlines()) == 1
    assert main(["average", str(tiny_onnx), str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "o.onnx")]) == 2
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "o.onnx").exists()
    with pytest.raises(ModelError, match="exported .onnx"):
        average_models([tiny_onnx, trained_run / "best.keras"], tmp_path / "k.onnx")


def test_members_come_back_out_of_an_average_as_they_went_in(tiny_onnx, untrained_onnx, tmp_path, capsys):
    pair = average_models([tiny_onnx, untrained_onnx], tmp_path / "pair.onnx")
    assert main(["members", str(pair), "--out", str(tmp_path / "members")]) == 0
    assert capsys.readouterr().out.count("wrote") == 2
    rng = np.random.default_rng(1)
    for original in (tiny_onnx, untrained_onnx):
        member = AgeGenderModel(tmp_path / "members" / original.name, flip=False)
        alone = AgeGenderModel(original, flip=False)
        assert member.image_size == alone.image_size and member.metadata["name"] == alone.metadata["name"]
        pixels = rng.uniform(0, 255, (5, alone.image_size, alone.image_size, 3)).astype("float32")
        got, expected = member.predict_outputs(pixels), alone.predict_outputs(pixels)
        assert np.allclose(got["age"], expected["age"], atol=1e-5)
        assert np.allclose(got["gender"], expected["gender"], atol=1e-6)
        assert "age_weight" not in member.metadata  # a weight belongs to the average, not to the network
    # averaged again, the members make the same model
    again = average_models([tmp_path / "members" / "tiny.onnx", tmp_path / "members" / "untrained.onnx"],
                           tmp_path / "again.onnx")
    pixels = rng.uniform(0, 255, (5, 48, 48, 3)).astype("float32")
    first, second = AgeGenderModel(pair, flip=False), AgeGenderModel(again, flip=False)
    assert np.allclose(first.predict_outputs(pixels)["age"], second.predict_outputs(pixels)["age"], atol=1e-6)


def test_members_of_a_single_model_are_refused_in_one_line(tiny_onnx, tmp_path, capsys):
    assert main(["members", str(tiny_onnx), "--out", str(tmp_path / "members")]) == 2
    error = capsys.readouterr().err
    assert "is not an average of models" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "members").exists()
