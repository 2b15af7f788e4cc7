import numpy as np
import pytest

from agegender.pipeline import age_distribution_targets, augmenter, make_dataset
from agegender.recipes import get_recipe


def test_report_augmentation_has_no_zoom_or_colour_and_the_stronger_one_adds_them():
    assert [layer.__class__.__name__ for layer in augmenter(get_recipe("seed-a"), 0).layers] == [
        "RandomRotation", "RandomTranslation", "RandomFlip"]
    stronger = get_recipe("seed-a").with_overrides(rotation_degrees=0.0, shift_fraction=0.0, horizontal_flip=False,
                                                   zoom_fraction=0.2, color_jitter=0.3)
    augment = augmenter(stronger, 0)
    assert [layer.__class__.__name__ for layer in augment.layers] == ["RandomZoom", "RandomBrightness",
                                                                      "RandomContrast"]
    images = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    changed = np.asarray(augment(images, training=True))
    assert changed.shape == images.shape
    assert changed.min() >= 0 and changed.max() <= 255
    assert np.abs(changed - images).mean() > 1.0
    assert np.array_equal(np.asarray(augment(images, training=False)), images)  # never at evaluation


def test_validation_batches_are_untouched_and_carry_distribution_targets():
    pixels = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    ages, genders = np.array([0, 10, 30, 60, 100]), np.array([0, 1, 0, 1, 1])
    batches = list(make_dataset(pixels, ages, genders, batch_size=4, age_sigma=2.0))
    assert [len(images) for images, _ in batches] == [4, 1]
    images, targets = batches[0]
    assert np.array_equal(np.asarray(images), pixels[:4].astype("float32"))
    assert np.allclose(np.asarray(targets["age_distribution"]).sum(axis=1), 1.0)
    assert np.argmax(age_distribution_targets(ages, 2.0), axis=1).tolist() == ages.tolist()
    assert np.asarray(targets["age"]).ravel().tolist() == pytest.approx([0, 10, 30, 60])


def test_balanced_gender_weights_give_each_age_bracket_its_share_and_weight_only_the_gender_loss():
    from agegender.models import build_model, compile_model
    from agegender.train import gender_weights

    ages = np.array([5] * 2 + [30] * 8)  # two children, eight adults
    assert gender_weights(ages, 0.0) is None
    full = gender_weights(ages, 1.0)
    assert full.mean() == pytest.approx(1.0)
    assert full[:2].sum() == pytest.approx(full[2:].sum())  # each bracket the same total
    half = gender_weights(ages, 0.5)
    assert half[0] / half[-1] == pytest.approx(2.0)  # sqrt(8 / 2)

    recipe = get_recipe("seed-a").with_overrides(image_size=16, gender_balance=1.0)
    pixels = np.random.default_rng(2).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    genders = np.array([0, 0] + [1, 0] * 4)  # both children male, so that weighting them changes the loss
    batch = next(iter(make_dataset(pixels, ages, genders, batch_size=10, gender_weights=full)))
    assert set(batch[2]) == {"gender", "age"}
    assert np.asarray(batch[2]["gender"]).tolist() == pytest.approx(full.tolist())
    assert np.asarray(batch[2]["age"]).tolist() == [1.0] * 10

    # Keras applies the weights to the gender loss only: the weighted mean of each face's cross-entropy.
    model = build_model(recipe, None, np.full(3, 128.0), np.full(3, 50.0 ** 2))
    kernel, bias = model.get_layer("gender").get_weights()
    model.get_layer("gender").set_weights([kernel * 0, bias + 2.0])  # female 0.88 for every face
    compile_model(model, recipe)
    female = np.asarray(model.predict(pixels.astype("float32"), verbose=0)["gender"]).ravel().astype(float)
    female = np.clip(female, 1e-7, 1 - 1e-7)
    per_face = -(genders * np.log(female) + (1 - genders) * np.log(1 - female))
    unweighted = model.evaluate(make_dataset(pixels, ages, genders, batch_size=10), verbose=0, return_dict=True)
    weighted = model.evaluate(make_dataset(pixels, ages, genders, batch_size=10, gender_weights=full), verbose=0,
                              return_dict=True)
    assert unweighted["gender_loss"] == pytest.approx(per_face.mean(), rel=1e-3)
    assert weighted["gender_loss"] == pytest.approx((full * per_face).mean(), rel=1e-3)
    assert weighted["gender_loss"] > 1.2 * unweighted["gender_loss"]
    assert weighted["age_loss"] == pytest.approx(unweighted["age_loss"], rel=1e-4)
    with pytest.raises(ValueError, match="gender_balance=2.0: expected a number from 0 to 1"):
        recipe.with_overrides(gender_balance=2.0)


def test_balanced_age_weights_give_each_age_bracket_and_gender_its_share_of_the_age_loss():
    from agegender.train import age_weights

    ages = np.array([50] * 6 + [50] * 2 + [30] * 8)
    genders = np.array([0] * 6 + [1] * 2 + [0, 1] * 4)  # six men and two women of 40-59, four of each of 20-39
    assert age_weights(ages, genders, 0.0) is None
    full = age_weights(ages, genders, 1.0)
    assert full.mean() == pytest.approx(1.0)
    assert full[:6].sum() == pytest.approx(full[6:8].sum()) == pytest.approx(full[8::2].sum())  # each cell alike
    assert age_weights(ages, genders, 0.5)[6] / age_weights(ages, genders, 0.5)[0] == pytest.approx(3 ** 0.5)
    pixels = np.zeros((16, 16, 16, 3), dtype=np.uint8)
    batch = next(iter(make_dataset(pixels, ages, genders, batch_size=16, age_weights=full, age_sigma=2.0)))
    assert np.asarray(batch[2]["age"]).tolist() == pytest.approx(full.tolist())
    assert np.asarray(batch[2]["age_distribution"]).tolist() == pytest.approx(full.tolist())
    assert np.asarray(batch[2]["gender"]).tolist() == [1.0] * 16
    with pytest.raises(ValueError, match="age_balance=-1.0: expected a number from 0 to 1"):
        get_recipe("seed-a").with_overrides(age_balance=-1.0)


def test_mixup_blends_each_face_with_another_pixels_targets_and_weights_alike():
    recipe = get_recipe("seed-a").with_overrides(rotation_degrees=0.0, shift_fraction=0.0, horizontal_flip=False,
                                                 mixup=0.4)
    values = np.arange(0, 250, 10)  # each face one grey level, its age the same number, so a blend shows in both
    pixels = np.repeat(values.astype(np.uint8), 4 * 4 * 3).reshape(-1, 4, 4, 3)
    genders = (np.arange(len(values)) % 2).astype(float)
    images, targets, weights = next(iter(make_dataset(pixels, values.astype(float), genders, batch_size=25,
                                                      recipe=recipe, training=True, seed=3,
                                                      gender_weights=np.ones(len(values)) * 2)))
    images, ages = np.asarray(images), np.asarray(targets["age"]).ravel()
    assert np.allclose(images.std(axis=(1, 2, 3)), 0, atol=1e-3)  # a blend of two flat faces is flat
    assert np.allclose(images[:, 0, 0, 0], ages, atol=1e-3)     # pixels and age blended by the same share
    assert not np.allclose(ages, np.round(ages / 10) * 10, atol=0.5)  # some faces really are blends
    female = np.asarray(targets["gender"]).ravel()
    assert female.min() >= 0 and female.max() <= 1 and ((female > 0.01) & (female < 0.99)).any()
    assert np.allclose(np.asarray(weights["gender"]), 2.0) and np.allclose(np.asarray(weights["age"]), 1.0)
    plain = next(iter(make_dataset(pixels, values.astype(float), genders, batch_size=25, recipe=recipe)))
    assert np.array_equal(np.asarray(plain[0]), pixels.astype("float32"))  # never at validation
    with pytest.raises(ValueError, match="mixup or race_auxiliary"):
        recipe.with_overrides(race_auxiliary=True)
    with pytest.raises(ValueError, match="mixup=-1"):
        recipe.with_overrides(mixup=-1.0)


def test_random_erasing_replaces_one_rectangle_of_some_faces_with_noise():
    recipe = get_recipe("seed-a").with_overrides(rotation_degrees=0.0, shift_fraction=0.0, horizontal_flip=False,
                                                 random_erasing=0.5)
    pixels = np.full((64, 40, 40, 3), 128, np.uint8)
    images = np.asarray(next(iter(make_dataset(pixels, np.ones(64), np.zeros(64), batch_size=64, recipe=recipe,
                                               training=True, seed=5)))[0])
    changed = (images != 128).any(axis=3)
    erased = changed.any(axis=(1, 2))
    assert 16 < erased.sum() < 48  # about half the faces
    for mask in changed[erased]:
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = mask[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
        assert box.mean() > 0.95  # one filled rectangle (a noise pixel may draw 128 itself)
        assert 0.01 < box.size / mask.size < 0.45
    assert images[erased].std() > 30  # random pixels, not a flat patch
    plain = next(iter(make_dataset(pixels, np.ones(64), np.zeros(64), batch_size=64, recipe=recipe)))
    assert np.array_equal(np.asarray(plain[0]), pixels.astype("float32"))  # never at validation
    with pytest.raises(ValueError, match="random_erasing=1.5"):
        recipe.with_overrides(random_erasing=1.5)
