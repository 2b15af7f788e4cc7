"""dlib's face-recognition ResNet rebuilt in Keras: the same embedding as dlib's own, refused foreign files,
and a run that fine-tunes it end to end (train, export, predict)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from agegender.dlib_resnet import INPUT_SIZE, build_backbone, default_weights_path, preprocessing_layer
from agegender.models import WeightsError, build_model
from agegender.recipes import get_recipe

from conftest import synthetic_face


def test_the_rebuilt_network_gives_dlibs_own_face_descriptor():
    import dlib

    rng = np.random.default_rng(0)
    chips = np.stack([np.asarray(Image.fromarray(synthetic_face(age, gender, rng)).resize((INPUT_SIZE, INPUT_SIZE)))
                      for age, gender in ((3, 0), (30, 1), (70, 0), (45, 1))])
    chips[3] = rng.integers(0, 256, chips[3].shape)  # and one of noise
    dlib_net = dlib.face_recognition_model_v1(default_weights_path())
    expected = np.stack([np.asarray(dlib_net.compute_face_descriptor(chip)) for chip in chips])
    network = build_backbone(default_weights_path(), include_embedding=True)
    ours = network(preprocessing_layer()(chips.astype("float32")))
    assert np.abs(np.asarray(ours) - expected).max() < 1e-5
    assert len({tuple(v) for v in expected.round(3)}) == 4  # four different faces, not one answer for all


def test_a_missing_or_foreign_weights_file_is_refused_in_one_line(tmp_path):
    recipe = get_recipe("dlib-resnet")
    with pytest.raises(WeightsError, match="not found"):
        build_model(recipe, str(tmp_path / "absent.dat"))
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x01\x01" + bytes(range(256)) * 4)
    with pytest.raises(WeightsError, match="is not dlib's face-recognition ResNet"):
        build_model(recipe, str(junk))
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(open(default_weights_path(), "rb").read()[:200_000])
    with pytest.raises(WeightsError, match="is not dlib's face-recognition ResNet"):
        build_model(recipe, str(truncated))
    with pytest.raises(ValueError, match="needs faces of at least 131 px"):
        build_model(recipe.with_overrides(image_size=128))


def test_a_dlib_resnet_run_fine_tunes_the_network_but_not_its_folded_batchnorm(tmp_path, utk_folder):
    import keras

    from agegender.export import export_onnx
    from agegender.predictor import AgeGenderModel
    from agegender.train import train

    out = tmp_path / "run"
    train(get_recipe("dlib-resnet").with_overrides(batch_size=16), str(utk_folder), out,
          overrides={"epochs": 1, "warmup_epochs": 0}, verbose=0)
    start = build_backbone(default_weights_path())
    tuned = keras.models.load_model(out / "best.keras", compile=False).get_layer("dlib_resnet")
    for name in ("dlib_conv0", "dlib_conv28"):
        assert not np.allclose(tuned.get_layer(name).get_weights()[0], start.get_layer(name).get_weights()[0])
    for name in ("dlib_affine0", "dlib_affine28"):
        for after, before in zip(tuned.get_layer(name).get_weights(), start.get_layer(name).get_weights()):
            assert np.array_equal(after, before)
    assert json.loads((out / "config.json").read_text())["recipe"]["image_size"] == INPUT_SIZE

    onnx_path = export_onnx(out, tmp_path / "dlib.onnx")
    pixels = np.random.default_rng(1).uniform(0, 255, (3, INPUT_SIZE, INPUT_SIZE, 3)).astype("float32")
    onnx_ages, onnx_female = AgeGenderModel(onnx_path).predict_pixels(pixels)
    keras_ages, keras_female = AgeGenderModel(out / "best.keras").predict_pixels(pixels)
    assert np.allclose(onnx_ages, keras_ages, atol=1e-3) and np.allclose(onnx_female, keras_female, atol=1e-5)


def test_a_run_refused_for_its_backbone_weights_leaves_no_folder_behind(tmp_path, utk_folder):
    from agegender.train import train

    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"not a dlib network")
    out = tmp_path / "run"
    with pytest.raises(WeightsError, match="is not dlib's face-recognition ResNet"):
        train(get_recipe("dlib-resnet"), str(utk_folder), out, overrides={"epochs": 1}, backbone_weights=str(junk),
              verbose=0)
    assert not out.exists()  # so the same command with the right file starts afresh instead of asking for --resume
    with pytest.raises(ValueError, match="needs faces of at least 131 px"):  # nor for a face size it cannot read
        train(get_recipe("dlib-resnet"), str(utk_folder), out, overrides={"epochs": 1, "image_size": 128}, verbose=0)
    assert not out.exists()


def test_larger_faces_go_through_the_same_weights_and_warm_start_from_a_150_px_run(tmp_path):
    from agegender.train import load_start_weights

    native = build_model(get_recipe("dlib-resnet"))
    recipe = get_recipe("dlib-resnet").with_overrides(image_size=176)
    larger = build_model(recipe)
    assert larger.input_shape == (None, 176, 176, 3) and larger.count_params() == native.count_params()
    (tmp_path / "native").mkdir()
    native.save(tmp_path / "native" / "best.keras")
    assert load_start_weights(larger, tmp_path / "native", recipe) == []
    for ours, theirs in zip(larger.get_weights(), native.get_weights()):
        assert np.array_equal(ours, theirs)
    outputs = larger(np.zeros((2, 176, 176, 3), "float32"))
    assert outputs["age"].shape == (2, 1) and np.isfinite(outputs["gender"]).all()


def test_a_block_left_out_keeps_every_other_layer_and_its_dlib_weights(tmp_path):
    from agegender.train import load_start_weights

    full = build_model(get_recipe("dlib-resnet"))
    recipe = get_recipe("dlib-resnet").with_overrides(dropped_blocks="13")
    trimmed = build_model(recipe)
    names = {layer.name for layer in trimmed.get_layer("dlib_resnet").layers}
    assert not names & {"dlib_conv25", "dlib_conv26", "dlib_affine25", "dlib_affine26"}
    assert {"dlib_conv24", "dlib_affine24", "dlib_conv27", "dlib_conv28"} <= names
    assert full.count_params() - trimmed.count_params() == 2 * (9 * 256 * 256 + 256) + 2 * (256 + 256)
    # The convolutions after the gap still carry their own weights from dlib's file, not a neighbour's.
    assert np.array_equal(trimmed.get_layer("dlib_resnet").get_layer("dlib_conv27").get_weights()[0],
                          full.get_layer("dlib_resnet").get_layer("dlib_conv27").get_weights()[0])
    # A warm start from the whole network sets the block's weights aside and takes every other layer.
    (tmp_path / "full").mkdir()
    full.save(tmp_path / "full" / "best.keras")
    assert load_start_weights(trimmed, tmp_path / "full", recipe) == []
    assert np.array_equal(trimmed.get_layer("gender").get_weights()[0], full.get_layer("gender").get_weights()[0])
    for wrong in ("4", "14", "0"):  # blocks that downsample or widen cannot be left out
        with pytest.raises(ValueError, match="that keep their input's shape"):
            recipe.with_overrides(dropped_blocks=wrong)
