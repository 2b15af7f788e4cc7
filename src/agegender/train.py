"""Train a recipe into a run folder: config, split, history, best checkpoint, figures and metrics.

A run folder is resumable: Keras' BackupAndRestore keeps the last finished epoch, so an interrupted run
continues with `resume=True` and loses nothing; a finished run is never overwritten.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from . import data
from .evaluate import breakdown, history_summary, plot_history, write_evaluation
from .images import load_crops
from .models import AGE_OUTPUT_LAYERS, EMBEDDING, RACE, WeightsError, build_model, compile_model, dropped_layer
from .onnx_weights import OnnxWeightsError, load_onnx_weights
from .pipeline import channel_statistics, make_dataset
from .recipes import Recipe
from .teacher import load_teacher_embeddings, load_teacher_outputs


class RunError(ValueError):
    """A run folder that cannot be used as asked."""


class StartWeightsError(RunError):
    """The checkpoint named by `init_from` does not fit the recipe's network."""


CONFIG, SPLIT, HISTORY, BEST, ONNX, METRICS, BACKUP = (
    "config.json", "split.csv", "history.csv", "best.keras", "model.onnx", "metrics.json", "backup")


class EpochClock(keras.callbacks.Callback):
    """Adds the epoch's wall time and learning rate to the logs that CSVLogger writes."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.perf_counter() - self._start
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class AveragedWeightsAtEpochEnd(keras.callbacks.SwapEMAWeights):
    """With `ema_momentum`: the averaged weights are in the model for validation and for every callback after
    this one at an epoch's end (the best checkpoint, the backup), the trained ones during the epoch.

    A resumed run starts from a backup written with the averages in the model and the trained weights in the
    optimizer's slots for the averages, so they are swapped back before its first epoch as after any other.
    """

    def __init__(self, resumed: bool):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = resumed


def _hardware() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"


def _prepare(recipe: Recipe, data_source: str, out: Path, overrides: dict, backbone_weights: str | None,
             init_from: Path | None) -> dict:
    """A new run folder with its resolved config and saved split."""
    frame = data.read_dataset(data_source)
    split = data.protocol_split(frame, recipe.protocol, recipe.seed)
    if recipe.refit:
        split = data.fold_validation_into_training(split)
    if recipe.train_fraction < 1:
        split = data.keep_training_share(split, recipe.train_fraction, recipe.seed)
    if init_from is not None and init_from.suffix == ".onnx":  # an exported model holds no split to compare
        if not init_from.is_file():
            raise RunError(f"{init_from} not found; --init-from takes a run folder or an exported .onnx model")
    elif init_from is not None:
        _check_same_split(init_from, split, recipe.refit)
    if recipe.teacher_embeddings:  # refused now rather than after a half-made run folder
        load_teacher_embeddings(recipe.teacher_embeddings, split.loc[split["split"] != "test", "path"].tolist())
    if recipe.teacher_outputs:
        load_teacher_outputs(recipe.teacher_outputs, split.loc[split["split"] == "train", "path"].tolist())
    if recipe.race_auxiliary and split.loc[split["split"] == "train", "race"].isna().all():
        raise RunError(f"race_auxiliary=true needs race labels, and no training image of {data_source} has one "
                       "(a race field in the UTKFace file name, or a race column in labels.csv)")
    out.mkdir(parents=True, exist_ok=True)
    data.save_split(split, out / SPLIT)
    config = {
        "recipe": recipe.to_dict(),
        "overrides": {key: value for key, value in overrides.items() if value is not None},
        "data": str(Path(data_source).resolve()),
        "backbone_weights": backbone_weights,
        "init_from": str(init_from) if init_from is not None else None,
        "train_images": int((split["split"] == "train").sum()),
        "val_images": int((split["split"] == "val").sum()),
        "test_images": int((split["split"] == "test").sum()),  # kept out of training and model choice
        "hardware": _hardware(),
        "versions": {"keras": keras.__version__, "tensorflow": _tf_version(), "python": platform.python_version()},
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return config


def _check_same_split(init_from: Path, split: pd.DataFrame, refit: bool = False) -> None:
    """A warm start must come from a run on the very same split: any other run has trained on images that are
    validation or test images here, and the new run's figures would no longer be honest. A refit may start from
    a run of its split before the validation part joined training."""
    if not (init_from / BEST).is_file():
        raise RunError(f"{init_from} holds no {BEST} to start from; name a run folder that has finished an epoch")
    def assignment(frame: pd.DataFrame) -> pd.DataFrame:
        # by resolved path: the same images named ../shared/... in one run and /work/shared/... in another
        resolved = frame["path"].map(os.path.realpath)
        return pd.DataFrame({"path": resolved, "split": frame["split"]}).sort_values("path").reset_index(drop=True)

    start = data.load_split(init_from / SPLIT)
    if refit:
        start = data.fold_validation_into_training(start)
    same = assignment(start).equals(assignment(split))
    if not same:
        raise RunError(f"{init_from} was trained on a different split; a warm start needs the same data, "
                       "protocol and seed (otherwise its training images could be validation or test images here)")


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def _last_backed_up_epoch(out: Path) -> int:
    meta = out / BACKUP / "training_metadata.json"
    return int(json.loads(meta.read_text())["epoch"]) if meta.is_file() else 0


def train(recipe: Recipe, data_source: str | None, out: str | Path, resume: bool = False,
          overrides: dict | None = None, backbone_weights: str | None = None, verbose: int | str = "auto",
          extra_callbacks: list | None = None, init_from: str | Path | None = None) -> dict:
    """Train `recipe` (with `overrides`) into `out`; with `resume`, continue the run already there.

    `init_from` (a run folder) starts the network from that run's best checkpoint instead of ImageNet: the
    second stage of a fine-tune, e.g. the whole backbone unfrozen at a lower learning rate. It may also be an
    exported .onnx model of the same recipe (onnx_weights.py), whose split cannot be checked: it must have been
    trained on this run's training part only.
    """
    out = Path(out)
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    if (out / METRICS).exists() and not resume:
        raise RunError(f"{out} holds a finished run; choose another --out (finished runs are never overwritten)")
    if resume:
        if not (out / CONFIG).is_file():
            raise RunError(f"{out} holds no run to resume (no {CONFIG}); start one without --resume")
        if (out / METRICS).exists():
            raise RunError(f"{out} holds a finished run; start a new one to train longer")
        config = json.loads((out / CONFIG).read_text())
        if init_from is not None:
            raise RunError("--init-from only starts a new run; a resumed run keeps the start recorded in its config.json")
        if set(overrides) - {"epochs"}:
            raise RunError("only --epochs can change when resuming; the run's other settings are in its config.json")
        if "epochs" in overrides:  # a run may be lengthened, or ended early at an epoch it has not passed
            done = _last_backed_up_epoch(out)
            if overrides["epochs"] < done:
                raise RunError(f"{out} has already run {done} epochs; --epochs must be at least {done}")
            config["overrides"]["epochs"] = config["recipe"]["epochs"] = overrides["epochs"]
            (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        recipe = Recipe.from_dict(config["recipe"])
        backbone_weights = config.get("backbone_weights")
    else:
        if out.exists() and any(out.iterdir()):
            raise RunError(f"{out} already holds an unfinished run; pass --resume to continue it or choose another --out")
        if data_source is None:
            raise RunError("--data is required for a new run")
        recipe = recipe.with_overrides(**overrides)
        config = _prepare(recipe, data_source, out, overrides, backbone_weights,
                          Path(init_from) if init_from is not None else None)

    keras.utils.set_random_seed(recipe.random_seed)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if recipe.mixed_precision else "float32")
    previous = _stop_on_sigterm()
    try:
        return _fit(recipe, config, out, verbose, extra_callbacks or [])
    except (StartWeightsError, WeightsError):
        if not resume:  # refused before any training: leave no half-made run folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        keras.mixed_precision.set_global_policy("float32")
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm():
    """`kill` (SIGTERM) stops a run like Ctrl-C: with the message that says how to resume it."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _fit(recipe: Recipe, config: dict, out: Path, verbose, extra_callbacks: list) -> dict:
    split = data.load_split(out / SPLIT)
    pixels, readable = load_crops(split["path"].tolist(), recipe.image_size)
    split, pixels = split[readable].reset_index(drop=True), pixels[readable]
    is_train, is_val = (split["split"] == "train").to_numpy(), (split["split"] == "val").to_numpy()
    train_pixels, val_pixels = pixels[is_train], pixels[is_val]  # a test part, if any, is never touched
    train_rows, val_rows = split[is_train], split[is_val]
    mean, variance = channel_statistics(train_pixels) if recipe.preprocessing == "featurewise" else (None, None)

    model = build_model(recipe, config.get("backbone_weights"), mean, variance)
    done = _last_backed_up_epoch(out)
    if config.get("init_from") and not done:  # past epoch 0, BackupAndRestore brings the run's own weights
        config["fresh_layers"] = load_start_weights(model, Path(config["init_from"]), recipe)
        (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    compile_model(model, recipe, steps_per_epoch=-(-len(train_pixels) // recipe.batch_size))
    sigma = recipe.age_sigma if recipe.has_age_distribution else None
    train_teacher, val_teacher = _teacher_targets(recipe, train_rows, val_rows)
    train_ages, train_genders = _training_targets(recipe, train_rows)
    train_data = make_dataset(train_pixels, train_ages, train_genders, recipe.batch_size, recipe, training=True,
                              seed=recipe.random_seed, age_sigma=sigma, embeddings=train_teacher,
                              gender_weights=gender_weights(train_rows["age"].to_numpy(), recipe.gender_balance),
                              age_weights=age_weights(train_rows["age"].to_numpy(), train_rows["gender"].to_numpy(),
                                                      recipe.age_balance),
                              races=_race_targets(recipe, train_rows))
    val_data = None if recipe.refit else make_dataset(
        val_pixels, val_rows["age"].to_numpy(), val_rows["gender"].to_numpy(), recipe.batch_size, age_sigma=sigma,
        embeddings=val_teacher, races=_race_targets(recipe, val_rows))

    # History rows past the last backed-up epoch belong to an epoch that will be run again.
    history_path = out / HISTORY
    if history_path.is_file():
        history = pd.read_csv(history_path)
        history[history["epoch"] < done].to_csv(history_path, index=False)
    best_so_far = (pd.read_csv(history_path)["val_loss"].min()
                   if done and history_path.is_file() and not recipe.refit else None)

    # Order matters at each epoch's end: the schedule, the best checkpoint and the history row are all
    # written before the backup, so a run killed at any moment resumes with nothing missing.
    callbacks = [EpochClock()]
    if recipe.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=recipe.plateau_factor, patience=recipe.plateau_patience,
            min_lr=recipe.min_learning_rate))
    if recipe.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=recipe.early_stopping_patience))
    if recipe.ema_momentum:
        callbacks.append(AveragedWeightsAtEpochEnd(resumed=done > 0))
    # A refit has no validation to choose on: its checkpoint is simply the last epoch.
    callbacks += [
        keras.callbacks.ModelCheckpoint(str(out / BEST), monitor="loss" if recipe.refit else "val_loss",
                                        save_best_only=not recipe.refit, initial_value_threshold=best_so_far),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(history_path), append=True),
        *extra_callbacks,
        keras.callbacks.BackupAndRestore(str(out / BACKUP), double_checkpoint=True),
    ]
    try:
        model.fit(train_data, validation_data=val_data, epochs=recipe.epochs, callbacks=callbacks, verbose=verbose,
                  shuffle=False)  # the pipeline shuffles
    except KeyboardInterrupt:
        raise RunError(f"training interrupted after epoch {_last_backed_up_epoch(out)}; "
                       f"continue with: agegender train --resume --out {out}") from None
    return finalize(out, config, recipe, val_rows, val_pixels, sample_face=pixels[:1])


def _training_targets(recipe: Recipe, train_rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The training part's ages and genders: the labels, or their blend with teacher outputs (soft targets)."""
    ages, genders = train_rows["age"].to_numpy(float), train_rows["gender"].to_numpy(float)
    if not recipe.teacher_outputs:
        return ages, genders
    female, teacher_ages = load_teacher_outputs(recipe.teacher_outputs, train_rows["path"].tolist())
    weight = recipe.teacher_output_weight
    return (1 - weight) * ages + weight * teacher_ages, (1 - weight) * genders + weight * female


def _race_targets(recipe: Recipe, rows: pd.DataFrame) -> np.ndarray | None:
    """The race labels for the auxiliary race output (-1 where a file name lacks one), or None without it."""
    return rows["race"].fillna(-1).to_numpy(int) if recipe.race_auxiliary else None


def gender_weights(ages: np.ndarray, balance: float) -> np.ndarray | None:
    """Each face's gender-loss weight, (faces in its age bracket)^-balance with a mean of 1; None for 0."""
    return _balanced([data.age_bracket(age) for age in ages], balance)


def age_weights(ages: np.ndarray, genders: np.ndarray, balance: float) -> np.ndarray | None:
    """Each face's age-loss weight, (faces of its age bracket and gender)^-balance with a mean of 1; None for 0."""
    return _balanced([f"{data.age_bracket(age)} {gender}" for age, gender in zip(ages, genders)], balance)


def _balanced(cells: list[str], balance: float) -> np.ndarray | None:
    if not balance:
        return None
    _, index, counts = np.unique(np.array(cells), return_inverse=True, return_counts=True)
    weights = counts[index].astype(float) ** -balance
    return weights / weights.mean()


def _teacher_targets(recipe: Recipe, train_rows: pd.DataFrame, val_rows: pd.DataFrame):
    """The distillation targets of the training and validation images, or (None, None) without a teacher.

    Centred on the training images' mean: dlib's embeddings share one large direction (every face's cosine
    with the mean is about 0.91 on UTKFace), so uncentred, a constant output would already score well.
    """
    if not recipe.teacher_embeddings:
        return None, None
    train, val = (load_teacher_embeddings(recipe.teacher_embeddings, rows["path"].tolist())
                  for rows in (train_rows, val_rows))
    centre = train.mean(axis=0)
    return train - centre, val - centre


def _counterless(name: str) -> str:
    """A layer name without the counter Keras appends to an unnamed layer's (conv2d_4 -> conv2d)."""
    return re.sub(r"_\d+$", "", name)


def _start_pairs(model: keras.Model, start: keras.Model, dropped):
    """(name, layer, start layer or None) for every layer with weights, through a nested backbone too. Top-level
    layers pair by name; a backbone's pair in order, once the start's blocks this recipe drops are set aside,
    because Keras names some of them by a counter that differs between two builds (conv2d, conv2d_4)."""
    start_layers = {layer.name: layer for layer in start.layers if layer.weights}
    for layer in (layer for layer in model.layers if layer.weights):
        source = start_layers.pop(layer.name, None)
        if not (isinstance(layer, keras.Model) and isinstance(source, keras.Model)):
            yield layer.name, layer, source
            continue
        ours = [inner for inner in layer.layers if inner.weights]
        theirs = [inner for inner in source.layers if inner.weights and not dropped(inner.name)]
        for index, inner in enumerate(ours):
            match = theirs[index] if index < len(theirs) else None
            if match is not None and _counterless(match.name) != _counterless(inner.name):
                match = None
            yield f"{layer.name}/{inner.name}", inner, match
        if len(theirs) > len(ours):
            start_layers.update({f"{layer.name}/{inner.name}": inner for inner in theirs[len(ours):]})
    yield from ((name, None, source) for name, source in start_layers.items())


def load_start_weights(model: keras.Model, run: Path, recipe: Recipe) -> list[str]:
    """Start `model` from `run`'s best checkpoint, layer by layer; returns the layers that start fresh.

    Every layer with weights must find one of the same name and weight shapes in the checkpoint, and every
    such layer of the checkpoint must be used. The exceptions: a run may change the kind of age output
    (regression to distribution or back), and then the age output layers start fresh while everything below
    them (the backbone and both heads' hidden layers) takes the start weights; likewise the distillation
    output when one run has a teacher and the other none, and the race output when one run has it; and the
    checkpoint's backbone blocks that this recipe drops (`dropped_blocks`) go unused.
    """
    if run.suffix == ".onnx":
        try:
            return load_onnx_weights(model, run)
        except OnnxWeightsError as error:
            raise StartWeightsError(f"cannot start from {run}: {error}") from None
    checkpoint = run / BEST
    start_recipe = json.loads((run / CONFIG).read_text())["recipe"] if (run / CONFIG).is_file() else {}
    may_differ = () if start_recipe.get("age_output", "regression") == recipe.age_output else AGE_OUTPUT_LAYERS
    if bool(start_recipe.get("teacher_embeddings")) != bool(recipe.teacher_embeddings):
        may_differ += (EMBEDDING,)
    if bool(start_recipe.get("race_auxiliary")) != recipe.race_auxiliary:
        may_differ += (RACE,)
    start = keras.models.load_model(checkpoint, compile=False)
    fresh, unused = [], []
    for name, layer, source in _start_pairs(model, start, dropped_layer(recipe)):
        if layer is None:
            if name not in may_differ:
                unused.append(name)
        elif source is not None and [w.shape for w in source.weights] == [w.shape for w in layer.weights]:
            layer.set_weights(source.get_weights())
        elif name in may_differ:
            fresh.append(name)
        else:
            raise StartWeightsError(f"cannot start from {checkpoint}: its network differs from this recipe's "
                                    f"(layer {name!r})")
    if unused:
        raise StartWeightsError(f"cannot start from {checkpoint}: its network differs from this recipe's "
                                f"(layers {unused} have no counterpart here)")
    return fresh


def finalize(out: Path, config: dict, recipe: Recipe, val_rows: pd.DataFrame, val_pixels: np.ndarray,
             sample_face: np.ndarray) -> dict:
    """metrics.json, the validation breakdown (none for a refit, which has no validation part) and the learning
    curves from the history and best checkpoint; `sample_face` (one crop) times the exported model."""
    from .evaluate import single_face_ms
    from .export import export_onnx
    from .predictor import AgeGenderModel

    history = pd.read_csv(out / HISTORY)
    if recipe.refit:  # Keras' CSVLogger adds empty val_ columns to a history without validation
        history = history.drop(columns=[c for c in history if c.startswith("val_")])
        history.to_csv(out / HISTORY, index=False)
    summary = history_summary(history)
    seconds = float(history["seconds"].sum())
    if not recipe.refit:
        ages, females = AgeGenderModel(out / BEST).predict_pixels(val_pixels)
        best = breakdown(val_rows.assign(predicted_age=ages, female_probability=females))
        write_evaluation(best, out / "val_breakdown", f"{recipe.name}: best checkpoint on the validation split")
    refit = ", refit on its training and validation parts" if recipe.refit else ""
    plot_history(history, out, f"{recipe.name} ({recipe.protocol} protocol{refit}, {len(history)} epochs)")
    metrics = {
        "recipe": recipe.name,
        "protocol": recipe.protocol,
        "epochs_planned": recipe.epochs,
        **summary,
        **({"refit": True} if recipe.refit else {"best_checkpoint_val": best["overall"]}),
        "wall_seconds": round(seconds, 1),
        "train_images_per_second": round(config["train_images"] * len(history) / seconds, 1),
        "parameters": int(keras.models.load_model(out / BEST, compile=False).count_params()),
        "hardware": config["hardware"],
    }
    onnx_path = export_onnx(out / BEST, out / ONNX, metadata={"recipe": recipe.name, "protocol": recipe.protocol})
    metrics["onnx_megabytes"] = round(onnx_path.stat().st_size / 1e6, 1)
    metrics["single_face_ms"] = single_face_ms(AgeGenderModel(onnx_path), sample_face)
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    shutil.rmtree(out / BACKUP, ignore_errors=True)
    return metrics
