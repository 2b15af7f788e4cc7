import keras
import numpy as np
import pytest

from agegender.models import WeightsError, build_model
from agegender.recipes import RECIPES, get_recipe
from conftest import XCEPTION_MIDDLE_BLOCK_PARAMETERS


def test_model_a_matches_the_report():
    model = build_model(get_recipe("seed-a"), mean=np.zeros(3), variance=np.ones(3))
    assert model.input_shape == (None, 128, 128, 3)
    assert sorted(model.output_names) == ["age", "gender"]
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) and c.padding == "same" for c in convs)
    assert all(c.kernel_regularizer.l2 == pytest.approx(0.005) for c in convs)
    assert model.get_layer("flatten").output.shape[1] == 8 * 8 * 256
    assert model.get_layer("gender_head_dense").units == 256
    assert model.get_layer("age_head_dense").units == 512
    assert model.get_layer("age_head_dense").kernel_regularizer.l2 == pytest.approx(0.006)
    assert model.get_layer("gender_head_dense").kernel_regularizer is None
    assert model.get_layer("gender_head_dropout").rate == model.get_layer("age_head_dropout").rate == 0.4
    assert model.get_layer("gender").activation.__name__ == "sigmoid"
    assert model.get_layer("age").activation.__name__ == "relu"
    assert model.count_params() == 12_977_858


def test_model_a_normalises_with_the_given_training_statistics():
    model = build_model(get_recipe("seed-a"), mean=[10.0, 20.0, 30.0], variance=[4.0, 4.0, 4.0])
    layer = model.get_layer("normalize")
    pixels = np.array([[[[12.0, 20.0, 26.0]]]], dtype="float32")
    assert np.allclose(np.asarray(layer(pixels)), [[[[1.0, 0.0, -2.0]]]])


def test_model_b_freezes_the_first_50_backbone_layers():
    model = build_model(get_recipe("seed-b"))
    base = model.get_layer("xception")
    assert not any(layer.trainable for layer in base.layers[:50])
    assert all(layer.trainable for layer in base.layers[50:])
    trainable = sum(int(np.prod(w.shape)) for w in base.trainable_weights)
    assert trainable == 17_548_224
    assert model.count_params() == 21_911_082
    assert model.get_layer("pool_dropout").rate == 0.3
    assert model.get_layer("gender_head_dense").kernel_regularizer.l2 == pytest.approx(0.002)
    assert model.get_layer("age_head_dense").kernel_regularizer.l2 == pytest.approx(0.004)
    assert model.get_layer("gender_head_dropout").rate == 0.2 and model.get_layer("age_head_dropout").rate == 0.3
    assert model.get_layer("rescale_unit").scale == pytest.approx(1 / 255)


def test_missing_or_wrong_backbone_weights_name_both_options(tmp_path):
    recipe = get_recipe("seed-b").with_overrides(image_size=71)
    with pytest.raises(WeightsError, match="not found; pass --backbone-weights PATH .* or --backbone-weights imagenet"):
        build_model(recipe, backbone_weights=str(tmp_path / "missing.h5"))
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="is not a Keras Xception notop weights file"):
        build_model(recipe, backbone_weights=str(junk))


def test_recipes_are_complete_and_overridable():
    assert {"seed-a", "seed-b", "xception"} <= set(RECIPES)
    seed_b = get_recipe("seed-b")
    assert (seed_b.learning_rate, seed_b.batch_size, seed_b.epochs, seed_b.protocol) == (1e-4, 32, 140, "5k")
    assert get_recipe("seed-a").with_overrides(epochs=3, seed=None).epochs == 3
    with pytest.raises(ValueError, match="unknown recipe setting"):
        get_recipe("seed-a").with_overrides(epochz=3)
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("seed-z")


def test_command_line_settings_are_read_as_the_field_s_type():
    seed_b = get_recipe("seed-b")
    assert seed_b.parse_setting("preprocessing=xception") == ("preprocessing", "xception")
    assert seed_b.parse_setting("backbone_batchnorm_inference=true") == ("backbone_batchnorm_inference", True)
    assert seed_b.parse_setting("learning_rate=3e-4") == ("learning_rate", 3e-4)
    assert seed_b.parse_setting("plateau_patience=2") == ("plateau_patience", 2)
    for bad, message in (("epochz=3", "KEY=VALUE"), ("epochs", "KEY=VALUE"), ("epochs=ten", "expected a int"),
                         ("horizontal_flip=maybe", "true or false"), ("loss_weights=1", "KEY=VALUE")):
        with pytest.raises(ValueError, match=message):
            seed_b.parse_setting(bad)
    assert seed_b.parse_settings(["loss_weights.age=0.01", "epochs=3", "loss_weights.gender=2"]) == {
        "loss_weights": {"gender": 2.0, "age": 0.01}, "epochs": 3}
    assert seed_b.loss_weights == {"gender": 1.0, "age": 1.0}
    for bad, message in (("loss_weights.height=1", "outputs are"), ("loss_weights.age=x", "a number")):
        with pytest.raises(ValueError, match=message):
            seed_b.parse_settings([bad])


def _moving_mean_change(recipe_name: str) -> float:
    from agegender.models import compile_model

    recipe = get_recipe(recipe_name).with_overrides(image_size=71)
    model = build_model(recipe)
    compile_model(model, recipe)
    layer = model.get_layer("xception").get_layer("block13_sepconv2_bn")  # well past the frozen 50
    before = np.array(layer.moving_mean)
    images = np.random.default_rng(0).uniform(0, 255, (8, 71, 71, 3)).astype("float32")
    model.fit(images, {"gender": np.ones((8, 1)), "age": np.full((8, 1), 30.0)}, epochs=1, verbose=0)
    return float(np.abs(np.array(layer.moving_mean) - before).max())


def test_corrected_recipe_keeps_backbone_batchnorm_statistics_and_the_report_s_does_not():
    assert _moving_mean_change("seed-b") > 0
    assert _moving_mean_change("xception") == 0


def test_cosine_schedule_warms_up_then_decays_to_the_minimum():
    from agegender.models import learning_rate

    recipe = get_recipe("xception").with_overrides(schedule="cosine", warmup_epochs=2, epochs=10,
                                                   learning_rate=1e-3, min_learning_rate=1e-5)
    schedule = learning_rate(recipe, steps_per_epoch=5)
    rates = [float(schedule(step)) for step in range(51)]
    assert rates[0] == pytest.approx(1e-5)
    assert rates[10] == pytest.approx(1e-3)                      # the end of the 2 warm-up epochs
    assert all(a < b for a, b in zip(rates[:10], rates[1:11]))    # rising during the warm-up
    assert all(a > b for a, b in zip(rates[10:50], rates[11:51]))  # falling after it
    assert rates[50] == pytest.approx(1e-5)
    assert learning_rate(get_recipe("seed-a"), steps_per_epoch=5) == pytest.approx(1e-3)


def test_dropped_xception_blocks_leave_a_whole_network_with_fewer_weights():
    recipe = get_recipe("xception").with_overrides(image_size=71)
    full = build_model(recipe)
    trimmed = build_model(recipe.with_overrides(dropped_blocks="6, 10,12"))
    base = trimmed.get_layer("xception")
    names = [layer.name for layer in base.layers]
    assert not any(name.startswith(("block6_", "block10_", "block12_")) for name in names)
    assert "block5_sepconv3_bn" in names and "block11_sepconv3_bn" in names and "block13_sepconv1" in names
    assert full.count_params() - trimmed.count_params() == 3 * XCEPTION_MIDDLE_BLOCK_PARAMETERS == 4_855_032
    outputs = trimmed(np.zeros((2, 71, 71, 3), "float32"))
    assert outputs["gender"].shape == (2, 1) and outputs["age"].shape == (2, 1)
    # The kept layers are the full backbone's: a block number outside the middle flow, or any other
    # architecture, is refused before a run starts.
    for wrong in ("4", "13", "six"):
        with pytest.raises(ValueError, match="expected block numbers of xception"):
            recipe.with_overrides(dropped_blocks=wrong)
    with pytest.raises(ValueError, match="architectures only"):
        get_recipe("seed-a").with_overrides(dropped_blocks="6")


def test_the_age_loss_can_be_the_absolute_error_in_years():
    from agegender.models import compile_model

    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    ages = np.arange(8, dtype="float32").reshape(8, 1) * 10
    losses = {}
    for name in ("mse", "l1"):
        recipe = get_recipe("seed-a").with_overrides(image_size=32, age_loss=name, xla=False)
        keras.utils.set_random_seed(0)
        model = build_model(recipe, mean=[128.0] * 3, variance=[4000.0] * 3)
        compile_model(model, recipe)
        predicted = model.predict(images, verbose=0)["age"]
        result = model.evaluate(images, {"gender": np.ones((8, 1)), "age": ages}, verbose=0, return_dict=True)
        losses[name] = result["age_loss"], predicted
    assert losses["mse"][0] == pytest.approx(np.mean((losses["mse"][1] - ages) ** 2), rel=1e-4)
    assert losses["l1"][0] == pytest.approx(np.mean(np.abs(losses["l1"][1] - ages)), rel=1e-4)
    with pytest.raises(ValueError, match="age_loss='huber': expected one of mse, l1"):
        get_recipe("seed-a").with_overrides(age_loss="huber")


def test_gender_label_smoothing_aims_the_loss_between_the_labels():
    from agegender.models import compile_model

    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    genders = (np.arange(8) % 2).astype("float32").reshape(8, 1)
    for smoothing in (0.0, 0.2):
        recipe = get_recipe("seed-a").with_overrides(image_size=32, gender_label_smoothing=smoothing, xla=False)
        keras.utils.set_random_seed(0)
        model = build_model(recipe, mean=[128.0] * 3, variance=[4000.0] * 3)
        compile_model(model, recipe)
        female = np.clip(model.predict(images, verbose=0)["gender"], 1e-7, 1 - 1e-7)
        result = model.evaluate(images, {"gender": genders, "age": np.full((8, 1), 30.0)}, verbose=0,
                                return_dict=True)
        target = genders * (1 - smoothing) + smoothing / 2
        expected = -np.mean(target * np.log(female) + (1 - target) * np.log(1 - female))
        assert result["gender_loss"] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="gender_label_smoothing=1.0"):
        get_recipe("seed-a").with_overrides(gender_label_smoothing=1.0)
