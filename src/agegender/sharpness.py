"""Sharpness-aware minimisation (SAM; Foret et al. 2021) as a Keras training step.

Each step takes the gradient at the weights, moves them `radius` along it (the nearby point where the loss rises
most), takes the gradient there, moves back and lets the optimizer apply that second gradient: the weights are
pulled towards regions where the loss is flat as well as low, which the paper found to generalise better and to
resist noisy labels. It costs two forward and backward passes a step.
"""
from __future__ import annotations

import contextlib
import types

import keras
import tensorflow as tf


def use_sharpness_aware_steps(model: keras.Model, radius: float) -> None:
    """Replace a compiled model's training step by SAM's; the model itself (and what it saves) is unchanged."""
    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        weights = self.trainable_variables
        loss, y_pred, gradients = _loss_and_gradients(self, x, y, sample_weight, weights)
        # The second pass must not count in the per-output losses Keras reports: those read the weights themselves.
        reported = [v for metric in self.metrics for v in metric.variables]
        before = [tf.identity(v) for v in reported]
        with moved_uphill(weights, gradients, radius):
            _, _, sharp_gradients = _loss_and_gradients(self, x, y, sample_weight, weights)
        for variable, value in zip(reported, before):
            variable.assign(value)
        self.optimizer.apply_gradients(zip(sharp_gradients, weights))
        # Reported as Keras's own step reports it: the loss at the weights, not at the moved ones.
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(keras.tree.flatten(x)[0])[0])
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    model.train_step = types.MethodType(train_step, model)


@contextlib.contextmanager
def moved_uphill(weights: list, gradients: list, radius: float):
    """Inside: `weights` moved `radius` along `gradients` (SAM's ascent); back where they were after."""
    norm = tf.linalg.global_norm(gradients)
    moves = [(weight, tf.cast(g * (radius / (norm + 1e-12)), weight.dtype))
             for weight, g in zip(weights, gradients) if g is not None]
    for weight, move in moves:
        weight.assign_add(move)
    try:
        yield
    finally:
        for weight, move in moves:
            weight.assign_sub(move)


def _loss_and_gradients(model: keras.Model, x, y, sample_weight, weights):
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        scaled = model.optimizer.scale_loss(loss)
    return loss, y_pred, tape.gradient(scaled, weights)
