"""tf.data input pipeline: decoded crops held in memory, shuffled by index, augmented per batch."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .recipes import Recipe


def augmenter(recipe: Recipe, seed: int) -> keras.Sequential | None:
    """The report's augmentation (rotation, horizontal and vertical shifts, horizontal flips), and the
    recipe's optional zoom and colour jitter; None when the recipe asks for none of them.

    'nearest' filling matches the Keras ImageDataGenerator the report used. Always float32, even under mixed
    precision, so the pixels that reach the model's own preprocessing are exact.
    """
    steps = []
    if recipe.rotation_degrees:
        steps.append(keras.layers.RandomRotation(recipe.rotation_degrees / 360.0, fill_mode="nearest",
                                                 seed=seed, dtype="float32"))
    if recipe.shift_fraction:
        steps.append(keras.layers.RandomTranslation(recipe.shift_fraction, recipe.shift_fraction,
                                                    fill_mode="nearest", seed=seed + 1, dtype="float32"))
    if recipe.horizontal_flip:
        steps.append(keras.layers.RandomFlip("horizontal", seed=seed + 2, dtype="float32"))
    if recipe.zoom_fraction:
        steps.append(keras.layers.RandomZoom((-recipe.zoom_fraction, recipe.zoom_fraction), fill_mode="nearest",
                                             seed=seed + 3, dtype="float32"))
    if recipe.color_jitter:
        steps.append(keras.layers.RandomBrightness(recipe.color_jitter, seed=seed + 4, dtype="float32"))
        steps.append(keras.layers.RandomContrast(recipe.color_jitter, seed=seed + 5, dtype="float32"))
    return keras.Sequential(steps, name="augment") if steps else None


def age_distribution_targets(ages: np.ndarray, sigma: float, classes: int = 101) -> np.ndarray:
    """A Gaussian over ages 0..classes-1 around each true age, summing to 1 (label distribution learning)."""
    grid = np.arange(classes, dtype=np.float32)
    weights = np.exp(-((grid[None, :] - np.asarray(ages, np.float32).reshape(-1, 1)) ** 2) / (2 * sigma ** 2))
    return weights / weights.sum(axis=1, keepdims=True)


def make_dataset(pixels: np.ndarray, ages: np.ndarray, genders: np.ndarray, batch_size: int,
                 recipe: Recipe | None = None, training: bool = False, seed: int = 0,
                 age_sigma: float | None = None, embeddings: np.ndarray | None = None,
                 gender_weights: np.ndarray | None = None, races: np.ndarray | None = None,
                 age_weights: np.ndarray | None = None) -> tf.data.Dataset:
    """Batches of (float32 pixels 0-255, {"gender", "age"}, "age_distribution" when `age_sigma` is given,
    "embedding" when teacher `embeddings` are and "race" when `races` are (class numbers, -1 unknown));
    shuffled and augmented only when training. With `gender_weights`, `age_weights` or `races`, a third element
    weights each face's loss per output: gender by `gender_weights`, age (and its distribution) by
    `age_weights`, race by 0 where it is unknown, every other by 1."""
    images = tf.constant(pixels)
    targets = {"gender": tf.constant(genders.reshape(-1, 1), tf.float32),
               "age": tf.constant(ages.reshape(-1, 1), tf.float32)}
    if age_sigma:
        targets["age_distribution"] = tf.constant(age_distribution_targets(ages, age_sigma))
    if embeddings is not None:
        targets["embedding"] = tf.constant(embeddings, tf.float32)
    face_weights = {}
    if gender_weights is not None:
        face_weights["gender"] = tf.constant(np.asarray(gender_weights, np.float32))
    if age_weights is not None:
        for name in ("age", "age_distribution"):
            if name in targets:
                face_weights[name] = tf.constant(np.asarray(age_weights, np.float32))
    if races is not None:
        races = np.asarray(races).reshape(-1)
        targets["race"] = tf.constant(np.maximum(races, 0).reshape(-1, 1), tf.int32)
        face_weights["race"] = tf.constant((races >= 0).astype(np.float32))
    indices = tf.data.Dataset.range(len(pixels))
    if training:
        indices = indices.shuffle(len(pixels), seed=seed, reshuffle_each_iteration=True)
    augmenting = training and recipe is not None
    augment = augmenter(recipe, seed) if augmenting else None
    mix = recipe.mixup if augmenting else 0.0
    erase = recipe.random_erasing if augmenting else 0.0

    def gather(batch_indices):
        batch = tf.cast(tf.gather(images, batch_indices), tf.float32)
        if augment is not None:
            batch = augment(batch, training=True)
        if erase:
            batch = random_erasing(batch, erase, seed)
        batch_targets = {name: tf.gather(values, batch_indices) for name, values in targets.items()}
        ones = tf.ones_like(batch_indices, tf.float32)
        weights = {name: tf.gather(face_weights[name], batch_indices) if name in face_weights else ones
                   for name in targets}
        if mix:
            batch, batch_targets, weights = mixup(batch, batch_targets, weights, mix, seed)
        return (batch, batch_targets, weights) if face_weights else (batch, batch_targets)
    return indices.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def mixup(batch, targets: dict, weights: dict, alpha: float, seed: int):
    """Each face of the batch blended with another of it (Zhang et al. 2018), its pixels, targets and loss
    weights by the same share, drawn from Beta(alpha, alpha) for each face."""
    size = tf.shape(batch)[0]
    first = tf.random.gamma([size], alpha, seed=seed + 6)
    second = tf.random.gamma([size], alpha, seed=seed + 7)
    share = first / tf.maximum(first + second, 1e-12)  # Beta(alpha, alpha); both draws can underflow to 0
    partner = tf.random.shuffle(tf.range(size), seed=seed + 8)

    def blend(values):
        own = tf.reshape(tf.cast(share, values.dtype), [-1] + [1] * (len(values.shape) - 1))
        return own * values + (1 - own) * tf.gather(values, partner)
    return (blend(batch), {name: blend(values) for name, values in targets.items()},
            {name: blend(values) for name, values in weights.items()})


def random_erasing(batch, probability: float, seed: int, areas=(0.02, 0.4), aspects=(0.3, 1 / 0.3)):
    """Each face, with `probability`, with one rectangle of `areas` of it (height / width in `aspects`, drawn
    log-uniformly) replaced by uniform random pixels 0-255 (Zhong et al. 2020). Where a drawn rectangle does not
    fit, its sides are cut to the face's."""
    shape = tf.shape(batch)
    size, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    area = tf.random.uniform([size], *areas, seed=seed + 9) * height * width
    aspect = tf.exp(tf.random.uniform([size], np.log(aspects[0]), np.log(aspects[1]), seed=seed + 10))
    box_height = tf.minimum(tf.sqrt(area * aspect), height)
    box_width = tf.minimum(tf.sqrt(area / aspect), width)
    top = tf.random.uniform([size], seed=seed + 11) * (height - box_height)
    left = tf.random.uniform([size], seed=seed + 12) * (width - box_width)
    erased = tf.random.uniform([size], seed=seed + 13) < probability
    rows = tf.range(height)[None, :]
    columns = tf.range(width)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + box_height)[:, None])
    inside_columns = (columns >= left[:, None]) & (columns < (left + box_width)[:, None])
    mask = inside_rows[:, :, None] & inside_columns[:, None, :] & erased[:, None, None]
    noise = tf.random.uniform(shape, 0.0, 255.0, seed=seed + 14)
    return tf.where(mask[..., None], noise, batch)


def channel_statistics(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance over every pixel of every image (feature-wise normalisation)."""
    count = np.zeros(3)
    total = np.zeros(3)
    squares = np.zeros(3)
    for start in range(0, len(pixels), 512):  # in chunks: float64 copies of 15,000 crops would take 6 GB
        chunk = pixels[start:start + 512].reshape(-1, 3).astype(np.float64)
        count += len(chunk)
        total += chunk.sum(axis=0)
        squares += (chunk ** 2).sum(axis=0)
    mean = total / count
    return mean, squares / count - mean ** 2
