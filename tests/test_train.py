import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from agegender.recipes import get_recipe
from agegender.train import RunError, train
from conftest import XCEPTION_MIDDLE_BLOCK_PARAMETERS

TINY = get_recipe("seed-a").with_overrides(image_size=32, batch_size=16)


def test_tiny_run_learns_and_writes_a_complete_run_folder(trained_run):
    history = pd.read_csv(trained_run / "history.csv")
    assert len(history) == 4 and history["epoch"].tolist() == [0, 1, 2, 3]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    for name in ("config.json", "split.csv", "best.keras", "metrics.json", "gender_curves.png", "age_curves.png",
                 "val_breakdown.json", "val_breakdown.md"):
        assert (trained_run / name).is_file(), name
    assert not (trained_run / "backup").exists()
    config = json.loads((trained_run / "config.json").read_text())
    assert config["overrides"] == {"epochs": 4} and config["recipe"]["epochs"] == 4
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 4 and metrics["train_images_per_second"] > 0
    assert 1 <= metrics["best_val_gender_accuracy_epoch"] <= 4
    split = pd.read_csv(trained_run / "split.csv")
    assert (split.groupby("group")["split"].nunique() == 1).all()


def test_a_finished_run_is_never_overwritten(trained_run, utk_folder):
    before = (trained_run / "history.csv").read_text()
    with pytest.raises(RunError, match="holds a finished run"):
        train(TINY, str(utk_folder), trained_run, verbose=0)
    assert (trained_run / "history.csv").read_text() == before


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_to_the_same_epochs_and_history(tmp_path, utk_folder):
    out = tmp_path / "run"
    with pytest.raises(RunError, match="interrupted after epoch 2; continue with: agegender train --resume"):
        train(TINY, str(utk_folder), out, overrides={"epochs": 4}, verbose=0, extra_callbacks=[_Interrupt()])
    assert len(pd.read_csv(out / "history.csv")) == 2
    with pytest.raises(RunError, match="unfinished run; pass --resume"):
        train(TINY, str(utk_folder), out, verbose=0)
    with pytest.raises(RunError, match="only --epochs can change"):
        train(TINY, None, out, resume=True, overrides={"batch_size": 8}, verbose=0)
    with pytest.raises(RunError, match="already run 2 epochs; --epochs must be at least 2"):
        train(TINY, None, out, resume=True, overrides={"epochs": 1}, verbose=0)
    metrics = train(TINY, None, out, resume=True, verbose=0)
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert metrics["epochs_run"] == 4


def test_an_interrupted_run_can_be_ended_early_at_the_epochs_it_has(tmp_path, utk_folder):
    out = tmp_path / "run"
    with pytest.raises(RunError, match="interrupted after epoch 2"):
        train(TINY, str(utk_folder), out, overrides={"epochs": 5}, verbose=0, extra_callbacks=[_Interrupt()])
    metrics = train(TINY, None, out, resume=True, overrides={"epochs": 2}, verbose=0)
    assert metrics["epochs_run"] == metrics["epochs_planned"] == 2
    assert json.loads((out / "config.json").read_text())["overrides"]["epochs"] == 2


def test_a_warm_start_begins_from_the_earlier_runs_weights_and_only_on_its_split(tmp_path, trained_run, utk_folder):
    # With a learning rate of 0 the new run's best checkpoint keeps exactly the weights it started from.
    still = TINY.with_overrides(learning_rate=0.0)
    train(still, str(utk_folder), tmp_path / "stage2", overrides={"epochs": 1}, verbose=0, init_from=trained_run)
    start = keras.models.load_model(trained_run / "best.keras", compile=False)
    after = keras.models.load_model(tmp_path / "stage2" / "best.keras", compile=False)
    assert len(after.trainable_weights) == len(start.trainable_weights)
    for a, b in zip(after.trainable_weights, start.trainable_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    config = json.loads((tmp_path / "stage2" / "config.json").read_text())
    assert config["init_from"] == str(trained_run)

    with pytest.raises(RunError, match="different split"):  # its validation images would be training images here
        train(TINY, str(utk_folder), tmp_path / "other-seed", overrides={"epochs": 1, "seed": 7}, verbose=0,
              init_from=trained_run)
    assert not (tmp_path / "other-seed").exists()
    # Another training seed keeps the split, so the same warm start is allowed.
    train(still, str(utk_folder), tmp_path / "other-training-seed", overrides={"epochs": 1, "training_seed": 7},
          verbose=0, init_from=trained_run)
    assert (tmp_path / "other-training-seed" / "split.csv").read_text() == (trained_run / "split.csv").read_text()
    with pytest.raises(RunError, match="differs from this recipe"):
        # a larger input changes the flattened features' size, so the heads' first layers no longer fit
        train(TINY.with_overrides(image_size=2 * TINY.image_size), str(utk_folder), tmp_path / "other-net",
              overrides={"epochs": 1}, verbose=0, init_from=trained_run)
    assert not (tmp_path / "other-net").exists()


def test_a_warm_start_may_change_the_kind_of_age_output_and_keeps_everything_below_it(tmp_path, trained_run,
                                                                                      utk_folder):
    still = TINY.with_overrides(learning_rate=0.0, age_output="distribution")
    train(still, str(utk_folder), tmp_path / "distribution", overrides={"epochs": 1}, verbose=0, init_from=trained_run)
    config = json.loads((tmp_path / "distribution" / "config.json").read_text())
    # the age output layers: the new softmax, and the expectation over 0..100 (fixed, built that way)
    assert sorted(config["fresh_layers"]) == ["age", "age_distribution"]
    start = keras.models.load_model(trained_run / "best.keras", compile=False)
    after = keras.models.load_model(tmp_path / "distribution" / "best.keras", compile=False)
    kept = [layer.name for layer in start.layers if layer.weights and layer.name not in ("age", "age_distribution")]
    assert "age_head_dense" in kept and "gender" in kept
    for name in kept:  # trainable weights: BatchNormalization's moving statistics move even at learning rate 0
        for a, b in zip(after.get_layer(name).trainable_weights, start.get_layer(name).trainable_weights):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert after.get_layer("age_distribution").units == 101


def test_a_distribution_beside_the_regression_starts_fresh_alone_and_leaves_the_age_to_the_regression(
        tmp_path, trained_run, utk_folder):
    from agegender.predictor import AgeGenderModel

    still = TINY.with_overrides(learning_rate=0.0, age_output="regression_with_distribution")
    out = tmp_path / "beside"
    train(still, str(utk_folder), out, overrides={"epochs": 1}, verbose=0, init_from=trained_run)
    assert json.loads((out / "config.json").read_text())["fresh_layers"] == ["age_distribution"]
    start = keras.models.load_model(trained_run / "best.keras", compile=False)
    after = keras.models.load_model(out / "best.keras", compile=False)
    for a, b in zip(after.get_layer("age").weights, start.get_layer("age").weights):  # the regression kept
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    outputs = AgeGenderModel(out / "best.keras").predict_outputs(pixels)
    assert outputs["age_distribution"].shape == (4, 101)
    # the age is the regression's, not the (untrained) distribution's mean
    assert np.abs(outputs["age"] - outputs["age_distribution"] @ np.arange(101)).min() > 1
    assert (outputs["age_low"] <= outputs["age"]).all() and (outputs["age"] <= outputs["age_high"]).all()


def test_a_resumed_second_stage_no_longer_needs_the_checkpoint_it_started_from(tmp_path, trained_run, utk_folder):
    import shutil

    first = tmp_path / "first"
    shutil.copytree(trained_run, first)
    out = tmp_path / "second"
    with pytest.raises(RunError, match="interrupted after epoch 2"):
        train(TINY, str(utk_folder), out, overrides={"epochs": 3}, verbose=0, extra_callbacks=[_Interrupt()],
              init_from=first)
    (first / "best.keras").unlink()  # e.g. a new machine: run folders are committed without their weights
    assert train(TINY, None, out, resume=True, verbose=0)["epochs_run"] == 3


def test_resume_needs_an_unfinished_run(tmp_path, trained_run):
    with pytest.raises(RunError, match="no run to resume"):
        train(TINY, None, tmp_path / "empty", resume=True, verbose=0)
    with pytest.raises(RunError, match="holds a finished run; start a new one"):
        train(TINY, None, trained_run, resume=True, overrides={"epochs": 9}, verbose=0)


def test_a_tiny_xception_fine_tune_runs_end_to_end(tmp_path, utk_folder):
    # Six of the eight middle-flow blocks dropped halve the test's time; the whole network's count is test_models'.
    recipe = get_recipe("seed-b").with_overrides(image_size=71, batch_size=32, dropped_blocks="5,6,7,8,9,10")
    metrics = train(recipe, str(utk_folder), tmp_path / "b", overrides={"epochs": 1}, verbose=0)
    assert metrics["epochs_run"] == 1 and metrics["parameters"] == 21_911_082 - 6 * XCEPTION_MIDDLE_BLOCK_PARAMETERS
    assert (tmp_path / "b" / "model.onnx").is_file()


def test_an_age_distribution_model_on_the_holdout_protocol_trains_exports_and_gives_intervals(tmp_path, utk_folder):
    from agegender.export import export_onnx
    from agegender.images import load_crops
    from agegender.predictor import AgeGenderModel

    recipe = TINY.with_overrides(age_output="distribution")
    out = tmp_path / "distribution"
    train(recipe, str(utk_folder), out, overrides={"epochs": 3, "protocol": "holdout"}, verbose=0)
    config = json.loads((out / "config.json").read_text())
    split = pd.read_csv(out / "split.csv")["split"].value_counts()
    assert config["test_images"] == split["test"] > 0 and config["val_images"] == split["val"]
    assert json.loads((out / "val_breakdown.json").read_text())["overall"]["n"] == split["val"]  # test untouched
    history = pd.read_csv(out / "history.csv")
    assert history["age_distribution_loss"].iloc[-1] < history["age_distribution_loss"].iloc[0]
    assert "val_age_mae" in history
    pixels, _ = load_crops([str(p) for p in sorted(utk_folder.iterdir())[:16]], 32)
    onnx_model = AgeGenderModel(export_onnx(out, tmp_path / "distribution.onnx"))
    outputs = onnx_model.predict_outputs(pixels)
    distribution = outputs["age_distribution"]
    assert distribution.shape == (16, 101) and np.allclose(distribution.sum(axis=1), 1, atol=1e-4)
    assert np.allclose(outputs["age"], distribution @ np.arange(101), atol=0.05)  # age is the expected value
    assert (outputs["age_low"] <= outputs["age_high"]).all()
    keras_ages, _ = AgeGenderModel(out / "best.keras").predict_pixels(pixels)
    assert np.allclose(keras_ages, outputs["age"], atol=0.05)


def test_a_killed_run_stops_with_the_resume_message(tmp_path, utk_folder):
    import os
    import signal

    class _Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "run"
    with pytest.raises(RunError, match="interrupted after epoch 1; continue with: agegender train --resume"):
        train(TINY, str(utk_folder), out, overrides={"epochs": 3}, verbose=0, extra_callbacks=[_Kill()])
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is only there while training
    assert len(pd.read_csv(out / "history.csv")) == 1


def test_a_cosine_run_with_stronger_augmentation_resumes_on_the_same_schedule(tmp_path, utk_folder):
    from agegender.models import learning_rate

    recipe = TINY.with_overrides(schedule="cosine", warmup_epochs=1, zoom_fraction=0.15, color_jitter=0.2)
    out = tmp_path / "cosine"
    with pytest.raises(RunError, match="interrupted after epoch 2"):
        train(recipe, str(utk_folder), out, overrides={"epochs": 4}, verbose=0, extra_callbacks=[_Interrupt()])
    train(recipe, None, out, resume=True, verbose=0)
    config = json.loads((out / "config.json").read_text())
    steps = -(-config["train_images"] // recipe.batch_size)
    schedule = learning_rate(recipe.with_overrides(epochs=4), steps)
    logged = pd.read_csv(out / "history.csv")["learning_rate"].tolist()
    assert logged == pytest.approx([float(schedule(steps * epoch)) for epoch in (1, 2, 3, 4)], rel=1e-4)
    assert logged[0] == pytest.approx(recipe.learning_rate) and logged[3] < logged[1] < logged[0]


def test_a_run_with_balanced_losses_and_sharpness_aware_steps_trains_resumes_and_records_them(tmp_path, utk_folder):
    recipe = TINY.with_overrides(gender_balance=0.5, age_balance=0.5, sam_radius=0.05)
    out = tmp_path / "balanced"
    with pytest.raises(RunError, match="interrupted after epoch 2"):
        train(recipe, str(utk_folder), out, overrides={"epochs": 3}, verbose=0, extra_callbacks=[_Interrupt()])
    metrics = train(recipe, None, out, resume=True, verbose=0)
    assert metrics["epochs_run"] == 3
    assert json.loads((out / "config.json").read_text())["recipe"]["gender_balance"] == 0.5
    assert json.loads((out / "config.json").read_text())["recipe"]["age_balance"] == 0.5
    assert json.loads((out / "config.json").read_text())["recipe"]["sam_radius"] == 0.05
    assert np.isfinite(pd.read_csv(out / "history.csv")["gender_loss"]).all()


def _largest_change(run: Path, start: Path) -> float:
    after = keras.models.load_model(run / "best.keras", compile=False)
    before = keras.models.load_model(start / "best.keras", compile=False)
    return max(float(np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)).max())
               for a, b in zip(after.trainable_weights, before.trainable_weights))


def test_averaged_weights_are_what_a_run_keeps_also_across_an_interruption(tmp_path, trained_run, utk_folder):
    # An average that keeps 0.999999 of itself each step stays where it began, at the weights after the first
    # step (Adam's first step moves each weight by at most the learning rate), while training moves the weights
    # themselves: the checkpoint must hold the average, also after a resume (where swapping the two wrongly would
    # leave the weights trained up to the interruption in it).
    averaged = TINY.with_overrides(ema_momentum=0.999999)
    out = tmp_path / "averaged"
    with pytest.raises(RunError, match="interrupted after epoch 2"):
        train(averaged, str(utk_folder), out, overrides={"epochs": 3}, verbose=0, init_from=trained_run,
              extra_callbacks=[_Interrupt()])
    train(averaged, None, out, resume=True, verbose=0)
    history = pd.read_csv(out / "history.csv")
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]  # the weights themselves did train
    one_step = 1.01 * averaged.learning_rate
    assert _largest_change(out, trained_run) < one_step

    train(TINY, str(utk_folder), tmp_path / "plain", overrides={"epochs": 3}, verbose=0, init_from=trained_run)
    assert _largest_change(tmp_path / "plain", trained_run) > 3 * one_step
    with pytest.raises(ValueError, match="ema_momentum=1.0"):  # an average that never moves
        TINY.with_overrides(ema_momentum=1.0)


def test_a_run_that_drops_xception_blocks_starts_from_one_that_has_them(tmp_path):
    from agegender.models import build_model
    from agegender.train import StartWeightsError, load_start_weights

    recipe = get_recipe("xception").with_overrides(image_size=71)
    keras.utils.set_random_seed(0)
    start = build_model(recipe)
    (tmp_path / "full").mkdir()
    start.save(tmp_path / "full" / "best.keras")
    trimmed_recipe = recipe.with_overrides(dropped_blocks="7,11")
    trimmed = build_model(trimmed_recipe)
    assert load_start_weights(trimmed, tmp_path / "full", trimmed_recipe) == []
    for name in ("block5_sepconv1", "block12_sepconv3_bn", "block14_sepconv2"):
        for a, b in zip(trimmed.get_layer("xception").get_layer(name).weights,
                        start.get_layer("xception").get_layer(name).weights):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    np.testing.assert_array_equal(trimmed.get_layer("gender").get_weights()[0], start.get_layer("gender").get_weights()[0])

    # The other way round, the blocks this network has would have no start weights.
    (tmp_path / "trimmed").mkdir()
    trimmed.save(tmp_path / "trimmed" / "best.keras")
    with pytest.raises(StartWeightsError, match="block7_sepconv1"):
        load_start_weights(build_model(recipe), tmp_path / "trimmed", recipe)
    # Dropping fewer blocks than the start lacks is refused the same way.
    fewer = recipe.with_overrides(dropped_blocks="7")
    with pytest.raises(StartWeightsError, match="block11_sepconv1"):
        load_start_weights(build_model(fewer), tmp_path / "trimmed", fewer)


def test_a_warm_start_knows_the_same_images_under_another_spelling_of_their_path(trained_run, monkeypatch):
    from agegender import data
    from agegender.train import _check_same_split

    split = data.load_split(trained_run / "split.csv")
    folder = Path(split["path"].iloc[0]).parent
    monkeypatch.chdir(folder.parent)
    relative = split.assign(path=[f"{folder.name}/{Path(path).name}" for path in split["path"]])
    _check_same_split(trained_run, relative)  # e.g. ../shared/... in one run, /work/shared/... in the other
    with pytest.raises(RunError, match="different split"):
        _check_same_split(trained_run, relative.assign(split=relative["split"].iloc[::-1].to_numpy()))


def test_a_refit_trains_on_training_and_validation_parts_keeps_its_last_epoch_and_never_the_test_part(
        tmp_path, utk_folder):
    holdout = TINY.with_overrides(protocol="holdout", schedule="cosine")
    chosen = tmp_path / "chosen"
    train(holdout, str(utk_folder), chosen, overrides={"epochs": 1}, verbose=0)
    with pytest.raises(ValueError, match="refit=true trains without a validation part"):
        holdout.with_overrides(refit=True, schedule="plateau")

    out = tmp_path / "refit"
    with pytest.raises(RunError, match="interrupted after epoch 2"):
        train(holdout.with_overrides(refit=True), str(utk_folder), out, overrides={"epochs": 3}, verbose=0,
              init_from=chosen, extra_callbacks=[_Interrupt()])
    class _LastWeights(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.weights = [keras.ops.convert_to_numpy(w) for w in self.model.trainable_weights]

    last = _LastWeights()
    metrics = train(holdout.with_overrides(refit=True), None, out, resume=True, verbose=0, extra_callbacks=[last])
    before, after = pd.read_csv(chosen / "split.csv"), pd.read_csv(out / "split.csv")
    assert (after["split"] == "train").sum() == before["split"].isin(["train", "val"]).sum()
    assert after.loc[after["split"] == "test", "path"].tolist() == before.loc[before["split"] == "test", "path"].tolist()
    assert "val" not in set(after["split"])
    config = json.loads((out / "config.json").read_text())
    assert config["val_images"] == 0 and config["recipe"]["refit"] is True
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2] and not any(c.startswith("val_") for c in history)
    assert metrics["refit"] is True and metrics["epochs_run"] == 3 and "best_checkpoint_val" not in metrics
    assert not (out / "val_breakdown.json").exists() and (out / "age_curves.png").is_file()

    # The kept checkpoint is the last epoch's weights, not one chosen on anything.
    kept = keras.models.load_model(out / "best.keras", compile=False)
    for a, b in zip(kept.trainable_weights, last.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), b)

    from agegender.compare import load_run
    with pytest.raises(ValueError, match="is a refit"):
        load_run(out)


def test_a_run_on_a_share_of_the_training_part_records_it_and_never_trains_on_the_rest(tmp_path, utk_folder,
                                                                                      trained_run):
    with pytest.raises(ValueError, match="train_fraction=0.0"):
        TINY.with_overrides(train_fraction=0.0)
    out = tmp_path / "half"
    train(TINY.with_overrides(train_fraction=0.5), str(utk_folder), out, overrides={"epochs": 1}, verbose=0)
    config, split = json.loads((out / "config.json").read_text()), pd.read_csv(out / "split.csv")
    whole = pd.read_csv(trained_run / "split.csv")["split"].value_counts()
    assert config["train_images"] == (split["split"] == "train").sum() == pytest.approx(whole["train"] / 2, abs=8)
    assert config["val_images"] == whole["val"] and (split["split"] == "unused").sum() > 0
    with pytest.raises(RunError, match="different split"):  # the full run trained on this run's unused faces
        train(TINY.with_overrides(train_fraction=0.5), str(utk_folder), tmp_path / "from-full",
              overrides={"epochs": 1}, verbose=0, init_from=trained_run)


def test_race_as_an_auxiliary_task_trains_starts_fresh_on_a_warm_start_and_is_never_exported(
        tmp_path, trained_run, utk_folder):
    import onnx

    from agegender.export import export_onnx
    from agegender.pipeline import make_dataset

    # a face without a race label counts for nothing in the race loss, every face for the others
    _, targets, weights = next(iter(make_dataset(np.zeros((2, 8, 8, 3)), np.array([30, 40]), np.array([0, 1]), 2,
                                                 races=np.array([-1, 2]))))
    assert targets["race"].numpy().ravel().tolist() == [0, 2]
    assert weights["race"].numpy().tolist() == [0.0, 1.0] and weights["gender"].numpy().tolist() == [1.0, 1.0]

    out = tmp_path / "race"
    recipe = TINY.with_overrides(race_auxiliary=True, loss_weights={"gender": 1.0, "age": 1.0, "race": 0.3})
    train(recipe, str(utk_folder), out, overrides={"epochs": 2}, verbose=0, init_from=trained_run)
    assert json.loads((out / "config.json").read_text())["fresh_layers"] == ["race"]
    history = pd.read_csv(out / "history.csv")
    assert np.isfinite(history[["race_loss", "val_race_loss"]]).all().all()
    model = keras.models.load_model(out / "best.keras", compile=False)
    assert model.get_layer("race").units == 5
    exported = export_onnx(out, tmp_path / "race.onnx")
    assert sorted(output.name for output in onnx.load(exported).graph.output) == ["age", "gender"]
    # and a run without the race output may start from this one (from an exported model: test_onnx_weights.py)
    train(TINY, str(utk_folder), tmp_path / "without", overrides={"epochs": 1}, verbose=0, init_from=out)


def test_race_as_an_auxiliary_task_is_refused_on_data_without_race_labels(tmp_path, utk_folder):
    labels = pd.DataFrame({"path": sorted(str(path) for path in utk_folder.glob("*.jpg"))})
    labels["age"], labels["gender"] = 30, 0
    labels.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(RunError, match="needs race labels"):
        train(TINY.with_overrides(race_auxiliary=True), str(tmp_path / "labels.csv"), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
