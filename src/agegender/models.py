"""Model builders that a recipe names. Every model takes raw RGB pixels (0-255, float) and does its own
preprocessing, so a saved model alone is enough to predict; outputs are named `gender` and `age`."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers, regularizers

from . import dlib_resnet, teacher
from .recipes import Recipe
from .sharpness import use_sharpness_aware_steps


class WeightsError(ValueError):
    """Pretrained backbone weights that cannot be had."""


def preprocessing_layer(recipe: Recipe, mean: np.ndarray | None = None, variance: np.ndarray | None = None):
    if recipe.preprocessing == "featurewise":
        if mean is None or variance is None:
            raise ValueError("feature-wise normalisation needs the training split's mean and variance")
        return layers.Normalization(axis=-1, mean=list(map(float, mean)), variance=list(map(float, variance)),
                                    name="normalize")
    if recipe.preprocessing == "unit":
        return layers.Rescaling(1 / 255.0, name="rescale_unit")
    if recipe.preprocessing == "xception":
        return layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale_xception")
    return dlib_resnet.preprocessing_layer()  # "dlib": the recipe's own check leaves no other choice


def _head(x, units: int, dropout: float, l2: float, name: str, batchnorm: bool):
    x = layers.Dense(units, kernel_regularizer=regularizers.l2(l2) if l2 else None,
                     activation=None if batchnorm else "relu", name=f"{name}_dense")(x)
    if batchnorm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x)


AGES = 101  # the age distribution's classes: 0 to 100 years
AGE_OUTPUT_LAYERS = ("age", "age_distribution")  # the layers that differ between the two kinds of age output
EMBEDDING = "embedding"  # the distillation output (teacher.py): trained, never exported
RACE = "race"  # the auxiliary race output (recipe race_auxiliary): trained, never exported
RACES = 5  # UTKFace's race classes: White, Black, Asian, Indian, Others
TRAINING_ONLY_OUTPUTS = (EMBEDDING, RACE)  # outputs that shape the features in training; prediction leaves them out


def _outputs(recipe: Recipe, gender_features, age_features, shared_features):
    # float32 outputs keep the losses exact under bfloat16 mixed precision.
    outputs = {"gender": layers.Dense(1, activation="sigmoid", dtype="float32", name="gender")(gender_features)}
    distribution = (layers.Dense(AGES, activation="softmax", dtype="float32", name="age_distribution")(age_features)
                    if recipe.has_age_distribution else None)
    if recipe.age_output == "distribution":
        # The expected age: a fixed dot product with 0..100, a plain layer so that it exports to ONNX.
        expected = layers.Dense(1, use_bias=False, trainable=False, dtype="float32", name="age",
                                kernel_initializer=keras.initializers.Constant(np.arange(AGES).reshape(-1, 1)))
        outputs["age"] = expected(distribution)
    else:  # a regression; a distribution beside it serves the interval only
        outputs["age"] = layers.Dense(1, activation="relu", dtype="float32", name="age")(age_features)
    if distribution is not None:
        outputs["age_distribution"] = distribution
    if recipe.teacher_embeddings:
        # Linear from the features both heads share, so that those features must carry the teacher's.
        outputs[EMBEDDING] = layers.Dense(teacher.DIMENSIONS, dtype="float32", name=EMBEDDING)(shared_features)
    if recipe.race_auxiliary:
        # Also linear from the shared features: multi-task learning asks them to carry race as well.
        outputs[RACE] = layers.Dense(RACES, activation="softmax", dtype="float32", name=RACE)(shared_features)
    return outputs


def build_report_cnn(recipe: Recipe, mean=None, variance=None) -> keras.Model:
    """The report's Model A: four Conv-BN-ReLU-MaxPool blocks (32-256 filters, L2 0.005), two dense heads."""
    inputs = keras.Input((recipe.image_size, recipe.image_size, 3), name="image")
    x = preprocessing_layer(recipe, mean, variance)(inputs)
    for block, filters in enumerate((32, 64, 128, 256), start=1):
        x = layers.Conv2D(filters, 3, padding="same", kernel_regularizer=regularizers.l2(0.005),
                          name=f"block{block}_conv")(x)
        x = layers.BatchNormalization(name=f"block{block}_bn")(x)
        x = layers.ReLU(name=f"block{block}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    gender = _head(x, 256, 0.4, 0.0, "gender_head", batchnorm=True)
    age = _head(x, 512, 0.4, 0.006, "age_head", batchnorm=True)
    return keras.Model(inputs, _outputs(recipe, gender, age, x), name=recipe.name)


def xception_backbone(image_size: int, weights: str | None) -> keras.Model:
    """ImageNet Xception without its top: weights "imagenet" (downloaded by Keras), a local file, or None."""
    size = (image_size, image_size, 3)
    options = ("pass --backbone-weights PATH to a local xception_imagenet_notop.weights.h5, "
               "or --backbone-weights imagenet on a machine with internet access")
    if weights == "imagenet":
        try:
            return keras.applications.Xception(weights="imagenet", include_top=False, input_shape=size)
        except Exception as error:  # noqa: BLE001 - any download failure gets the same advice
            raise WeightsError(f"could not download the ImageNet Xception weights ({type(error).__name__}); "
                               f"{options}") from None
    base = keras.applications.Xception(weights=None, include_top=False, input_shape=size)
    if weights:
        if not Path(weights).is_file():
            raise WeightsError(f"backbone weights file {weights} not found; {options}")
        try:
            base.load_weights(weights)
        except Exception as error:  # noqa: BLE001 - a wrong or corrupt file
            raise WeightsError(f"{weights} is not a Keras Xception notop weights file ({error}); {options}") from None
    return base


def build_xception(recipe: Recipe, backbone_weights: str | None = None, mean=None, variance=None) -> keras.Model:
    """The report's Model B: Xception with the first `frozen_layers` layers frozen and two dense heads."""
    inputs = keras.Input((recipe.image_size, recipe.image_size, 3), name="image")
    x = preprocessing_layer(recipe, mean, variance)(inputs)
    base = xception_backbone(recipe.image_size, backbone_weights)
    for layer in base.layers[: recipe.frozen_layers]:
        layer.trainable = False
    if recipe.backbone_batchnorm_inference:
        # A non-trainable BatchNormalization runs in inference mode in Keras 3, keeping its ImageNet statistics
        # (calling the backbone with training=False does not: fit's training=True overrides it).
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
    pooled = layers.GlobalAveragePooling2D(name="pool")(without_blocks(base, dropped_layer(recipe))(x))
    return _with_model_b_heads(recipe, inputs, pooled)


def without_blocks(base: keras.Model, dropped) -> keras.Model:
    """Xception `base` without the layers for which `dropped(name)` holds (whole middle-flow blocks): each such
    block's residual sum passes its input on. The layers kept are `base`'s own (same names and weights)."""
    if not any(dropped(layer.name) for layer in base.layers):
        return base
    inputs = keras.Input(base.input_shape[1:], name=base.layers[0].name)
    rebuilt = {id(base.inputs[0]): inputs}  # base's tensors -> this network's
    for layer in base.layers[1:]:
        if dropped(layer.name):
            continue
        sources = layer.input if isinstance(layer.input, list) else [layer.input]
        kept = [rebuilt[id(tensor)] for tensor in sources if id(tensor) in rebuilt]
        if isinstance(layer, layers.Add) and len(kept) < len(sources):
            output = kept[0]  # the sum of a left-out block and its shortcut: the shortcut alone
        else:
            output = layer(kept[0] if len(sources) == 1 else kept)
        rebuilt[id(layer.output)] = output
    return keras.Model(inputs, rebuilt[id(base.outputs[0])], name=base.name)


def _with_model_b_heads(recipe: Recipe, inputs, pooled) -> keras.Model:
    """Model B's two dense heads (and outputs) on a backbone's pooled features."""
    x = layers.Dropout(0.3, name="pool_dropout")(pooled)
    gender = _head(x, 256, 0.2, 0.002, "gender_head", batchnorm=False)
    age = _head(x, 256, 0.3, 0.004, "age_head", batchnorm=False)
    return keras.Model(inputs, _outputs(recipe, gender, age, pooled), name=recipe.name)


def build_dlib_resnet(recipe: Recipe, backbone_weights: str | None = None, mean=None, variance=None) -> keras.Model:
    """dlib's face-recognition ResNet (pretrained on faces, dlib_resnet.py) with the two dense heads of Model B
    on its 256 pooled features; every layer trains but its folded BatchNorm and the first `frozen_layers`."""
    if backbone_weights and not Path(backbone_weights).is_file():
        raise WeightsError(f"backbone weights file {backbone_weights} not found; pass dlib's "
                           "dlib_face_recognition_resnet_model_v1.dat or leave --backbone-weights out for the one "
                           "face-recognition-models ships")
    try:
        base = dlib_resnet.build_backbone(backbone_weights or dlib_resnet.default_weights_path(),
                                          dropped_blocks=recipe.dropped_block_numbers, size=recipe.image_size)
    except dlib_resnet.DlibFileError as error:
        raise WeightsError(str(error)) from None
    for layer in base.layers[: recipe.frozen_layers]:  # e.g. a head-only first stage (linear probe)
        layer.trainable = False
    inputs = keras.Input((recipe.image_size, recipe.image_size, 3), name="image")
    return _with_model_b_heads(recipe, inputs, base(preprocessing_layer(recipe, mean, variance)(inputs)))


def dropped_layer(recipe: Recipe):
    """Whether a backbone layer of the full network belongs to a block that `recipe` leaves out."""
    numbers = recipe.dropped_block_numbers
    if recipe.architecture == "dlib_resnet":  # block n holds dlib_conv{2n-1}, dlib_conv{2n} and their scales
        names = {f"dlib_{kind}{2 * n - offset}" for n in numbers for kind in ("conv", "affine") for offset in (1, 0)}
        return lambda name: name in names
    prefixes = tuple(f"block{number}_" for number in numbers)  # Xception's names: block6_sepconv1, ...
    return lambda name: bool(prefixes) and name.startswith(prefixes)


def build_model(recipe: Recipe, backbone_weights: str | None = None, mean=None, variance=None) -> keras.Model:
    if recipe.architecture == "report_cnn":
        return build_report_cnn(recipe, mean, variance)
    if recipe.architecture == "xception":
        return build_xception(recipe, backbone_weights, mean, variance)
    return build_dlib_resnet(recipe, backbone_weights, mean, variance)  # "dlib_resnet": checked by the recipe


def learning_rate(recipe: Recipe, steps_per_epoch: int):
    """Adam's learning rate: a number (plateau and constant schedules) or the per-step warm-up and cosine."""
    if recipe.schedule in ("plateau", "constant"):
        return recipe.learning_rate
    warmup = recipe.warmup_epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.learning_rate / 100 if warmup else recipe.learning_rate,
        warmup_target=recipe.learning_rate if warmup else None, warmup_steps=warmup,
        decay_steps=max(1, recipe.epochs * steps_per_epoch - warmup),
        alpha=recipe.min_learning_rate / recipe.learning_rate if recipe.learning_rate else 0.0)


def _soft_target_accuracy(y_true, y_pred):
    """Binary accuracy against the side of 0.5 a soft target is on (a soft target never equals 0 or 1)."""
    return keras.ops.mean(keras.ops.cast(keras.ops.equal(y_true > 0.5, y_pred > 0.5), "float32"), axis=-1)


_soft_target_accuracy.__name__ = "accuracy"  # the same history column as the labels' accuracy


def compile_model(model: keras.Model, recipe: Recipe, steps_per_epoch: int = 1) -> None:
    loss = {"gender": keras.losses.BinaryCrossentropy(label_smoothing=recipe.gender_label_smoothing),
            "age": {"mse": "mse", "l1": "mae"}[recipe.age_loss]}
    if recipe.has_age_distribution:
        loss["age_distribution"] = "kl_divergence"
    if recipe.age_output == "distribution":
        loss["age"] = "mae"  # on the expected age
    if recipe.teacher_embeddings:
        loss[EMBEDDING] = "cosine_similarity"  # the direction of dlib's embedding is what it compares faces by
    if recipe.race_auxiliary:
        loss[RACE] = "sparse_categorical_crossentropy"  # faces without a race label weigh 0 (pipeline.py)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate(recipe, steps_per_epoch), use_ema=recipe.ema_momentum > 0,
                                        ema_momentum=recipe.ema_momentum),
        loss=loss,
        loss_weights={name: recipe.loss_weights.get(name, 1.0) for name in loss},
        metrics={"gender": [_soft_target_accuracy if recipe.teacher_outputs else "accuracy"], "age": ["mae"]},
        jit_compile=recipe.xla,
    )
    if recipe.sam_radius:
        use_sharpness_aware_steps(model, recipe.sam_radius)
