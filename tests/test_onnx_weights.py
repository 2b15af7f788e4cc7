import json

import keras
import numpy as np
import pytest

from agegender.export import export_onnx
from agegender.images import load_crops
from agegender.models import build_model
from agegender.onnx_weights import OnnxWeightsError, load_onnx_weights
from agegender.recipes import Recipe, get_recipe
from conftest import UTKFACE, XCEPTION_WEIGHTS


def _batchnorms(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _batchnorms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def _same_batchnorm(model, like):
    """`model` with `like`'s frozen BatchNorm statistics: what building it on the same backbone weights gives.
    Blocks' layers pair by name, the shortcuts' unnamed ones (in blocks no recipe drops) in order."""
    theirs = list(_batchnorms(like))
    named = {layer.name: layer for layer in theirs}
    unnamed = iter(layer for layer in theirs if not layer.name.startswith("block"))
    for ours in _batchnorms(model):
        # a block that `like` lacks keeps its own
        source = named.get(ours.name, ours) if ours.name.startswith("block") else next(unnamed)
        ours.set_weights(source.get_weights())
    return model


def _weights(model, backbone_layer: str):
    return model.get_layer("xception").get_layer(backbone_layer).get_weights()


def test_an_exported_xception_gives_its_weights_back(tmp_path, utk_folder):
    recipe = get_recipe("xception").with_overrides(image_size=71, dropped_blocks="7,11")
    keras.utils.set_random_seed(0)
    original = build_model(recipe)
    rng = np.random.default_rng(0)
    for layer in _batchnorms(original):  # statistics far from the identity, so that undoing the folds matters
        channels = layer.get_weights()[0].shape
        layer.set_weights([rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.2, channels),
                           rng.normal(0, 0.2, channels), rng.uniform(0.5, 2.0, channels)])
    original.save(tmp_path / "best.keras")
    images = sorted(str(path) for path in utk_folder.glob("*.jpg"))
    export_onnx(tmp_path / "best.keras", tmp_path / "float.onnx")
    pixels = load_crops(images[:16], 71)[0]
    expected = original.predict(pixels, verbose=0)

    # Built again, its unnamed layers numbered by other counters (conv2d_4, ...), from other random weights.
    recovered = _same_batchnorm(build_model(recipe), original)
    load_onnx_weights(recovered, tmp_path / "float.onnx")
    first_shortcut = [next(layer.name for layer in model.get_layer("xception").layers
                           if layer.name.startswith("conv2d")) for model in (recovered, original)]
    assert first_shortcut[0] != first_shortcut[1]
    for ours, theirs in [("block1_conv1",) * 2, ("block4_sepconv1",) * 2, ("block12_sepconv3",) * 2, first_shortcut]:
        for got, want in zip(_weights(recovered, ours), _weights(original, theirs), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(recovered.get_layer("gender").get_weights()[0],
                               original.get_layer("gender").get_weights()[0])
    got = recovered.predict(pixels, verbose=0)
    np.testing.assert_allclose(got["gender"], expected["gender"], atol=1e-4)
    np.testing.assert_allclose(got["age"], expected["age"], rtol=1e-3, atol=1e-3)
    # (int8 models: the last test here reads both members of the shipped model back)

    # A network with a training-only output (here race, as an auxiliary task) reads the rest; that output,
    # which no exported model holds, starts fresh.
    with_race = _same_batchnorm(build_model(recipe.with_overrides(race_auxiliary=True)), original)
    assert load_onnx_weights(with_race, tmp_path / "float.onnx") == ["race"]
    np.testing.assert_allclose(with_race.predict(pixels, verbose=0)["gender"], expected["gender"], atol=1e-4)

    # A network on other BatchNorm statistics (other backbone weights) would be wrong: refused.
    with pytest.raises(OnnxWeightsError, match="BatchNorm statistics"):
        load_onnx_weights(build_model(recipe), tmp_path / "float.onnx")
    # So is one with blocks the exported model lacks, or without blocks it has.
    fuller, leaner = recipe.with_overrides(dropped_blocks="7"), recipe.with_overrides(dropped_blocks="7,10,11")
    with pytest.raises(OnnxWeightsError, match="block11"):
        load_onnx_weights(_same_batchnorm(build_model(fuller), original), tmp_path / "float.onnx")
    with pytest.raises(OnnxWeightsError, match="layers this recipe's network lacks"):
        load_onnx_weights(_same_batchnorm(build_model(leaner), original), tmp_path / "float.onnx")


def test_a_network_that_trains_its_batchnorm_cannot_be_read_back(trained_run, tiny_onnx):
    recipe = Recipe.from_dict(json.loads((trained_run / "config.json").read_text())["recipe"])
    model = build_model(recipe, mean=np.zeros(3), variance=np.ones(3))
    with pytest.raises(OnnxWeightsError, match="frozen BatchNorm"):
        load_onnx_weights(model, tiny_onnx)
    with pytest.raises(OnnxWeightsError, match="not found"):
        load_onnx_weights(model, trained_run / "missing.onnx")



def test_a_run_from_an_onnx_model_that_does_not_fit_is_refused_and_leaves_nothing(tmp_path, utk_folder, tiny_onnx):
    from agegender.train import RunError, StartWeightsError, train

    recipe = get_recipe("seed-a").with_overrides(image_size=32)
    with pytest.raises(RunError, match="not found"):
        train(recipe, str(utk_folder), tmp_path / "missing", init_from=tmp_path / "missing.onnx", verbose=0)
    with pytest.raises(StartWeightsError, match="frozen BatchNorm"):  # Model A trains its BatchNorm
        train(recipe, str(utk_folder), tmp_path / "model-a", init_from=tiny_onnx, verbose=0)
    assert not (tmp_path / "missing").exists() and not (tmp_path / "model-a").exists()


@pytest.mark.skipif(not (XCEPTION_WEIGHTS.is_file() and (UTKFACE / "labels.csv").is_file()),
                    reason="../shared (ImageNet Xception weights, UTKFace) is absent")
@pytest.mark.parametrize("member, recipe, settings", [
    ("xception", "xception", {"dropped_blocks": "6,10", "frozen_layers": 0}),
    ("dlib", "dlib-resnet", {"dropped_blocks": "13", "image_size": 168})])
def test_the_shipped_models_int8_members_read_back_into_keras(tmp_path, member, recipe, settings):
    """Each member of the shipped default (static int8, blocks left out) on validation faces: the Keras network
    read back from it predicts what the member does, up to int8's rounding of activations."""
    from agegender import data
    from agegender.ensemble import extract_members
    from agegender.predictor import DEFAULT_MODEL, AgeGenderModel

    path = next(path for path in extract_members(DEFAULT_MODEL, tmp_path) if member in path.name)
    recipe = get_recipe(recipe).with_overrides(**settings)
    model = build_model(recipe, str(XCEPTION_WEIGHTS) if recipe.architecture == "xception" else None)
    load_onnx_weights(model, path)
    split = data.protocol_split(data.read_dataset(UTKFACE), "holdout", seed=1337)
    faces = split[split["split"] == "val"].sample(64, random_state=0)
    pixels = load_crops(faces["path"].tolist(), recipe.image_size)[0]
    got = model.predict(pixels, verbose=0)
    ages, females = AgeGenderModel(path).predict_pixels(pixels)
    assert np.abs(np.ravel(got["age"]) - ages).mean() < 0.6
    assert np.abs(np.ravel(got["gender"]) - females).mean() < 0.03
    assert ((np.ravel(got["gender"]) > 0.5) == (females > 0.5)).mean() >= 0.95
