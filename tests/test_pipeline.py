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
