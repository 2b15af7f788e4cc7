import json

import pandas as pd

from agegender.cli import main


def _fake_run(folder, protocol, train_images, accuracies, maes, seconds=60.0, recipe=None, speed=50.0, ms=3.2,
              planned=None):
    folder.mkdir(parents=True)
    epochs = len(accuracies)
    pd.DataFrame({
        "epoch": range(epochs), "gender_loss": [0.5] * epochs, "val_gender_loss": [0.6] * epochs,
        "gender_accuracy": [0.9] * epochs, "val_gender_accuracy": accuracies, "age_loss": [50.0] * epochs,
        "val_age_loss": [60.0] * epochs, "age_mae": [5.0] * epochs, "val_age_mae": maes,
        "loss": [51.0] * epochs, "val_loss": [61.0] * epochs, "seconds": [seconds] * epochs,
    }).to_csv(folder / "history.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({
        "protocol": protocol, "epochs_planned": planned or epochs, "wall_seconds": seconds * epochs,
        "train_images_per_second": speed, "parameters": 1234, "onnx_megabytes": 5.0, "single_face_ms": ms}))
    (folder / "config.json").write_text(json.dumps({
        "train_images": train_images, "val_images": train_images // 4,
        "recipe": recipe or {"early_stopping_patience": 0}}))
    (folder / "val_breakdown.json").write_text(json.dumps({
        "age_bracket": {"0-9": {"age_mae": 2.0}, "60+": {"age_mae": 9.5}},
        "race": {"White": {"gender_accuracy": 0.9}}}))
    return folder


def test_compare_writes_the_table_figures_and_conclusions(tmp_path, capsys):
    a = _fake_run(tmp_path / "model-a", "full", 15000, [0.80, 0.91, 0.90], [8.0, 7.0, 6.5])
    b = _fake_run(tmp_path / "model-b", "5k", 4000, [0.70, 0.85, 0.88, 0.89], [7.0, 6.0, 5.6, 5.7])
    out = tmp_path / "reports" / "compare.md"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    report = out.read_text()
    assert "| model-a | full (15000/3750) | 3 / 3 | 91.00% (2) | 6.50 (3) | 2.00 | 9.50 | 90.0% | 3 min |" in report
    assert "| model-b | 5k (4000/1000) | 4 / 4 | 89.00% (4) | 5.60 (3) |" in report
    assert "Gender: **model-a**" in report and "Age: **model-b**" in report
    assert "Convergence: **model-a**" in report
    assert "different amounts of data" in report
    assert (tmp_path / "reports" / "compare_curves.png").stat().st_size > 10_000


def test_compare_refuses_an_unfinished_run(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    assert main(["compare", str(tmp_path / "half"), "--out", str(tmp_path / "c.md")]) == 2
    assert "is not a finished run" in capsys.readouterr().err


def test_compare_refuses_a_folder_as_its_report_and_writes_nothing(tmp_path, capsys):
    run = _fake_run(tmp_path / "model-a", "full", 15000, [0.80, 0.91], [8.0, 7.0])
    (tmp_path / "reports").mkdir()
    assert main(["compare", str(run), "--out", str(tmp_path / "reports")]) == 2
    assert "is a folder; name the file to write, e.g." in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png")) and not list((tmp_path / "reports").iterdir())


def test_compare_checks_the_report_s_claims_on_a_shared_split_and_tabulates_one_change_at_a_time(tmp_path):
    from agegender.recipes import get_recipe

    seed_a, seed_b = get_recipe("seed-a").to_dict(), get_recipe("seed-b").to_dict()
    a_full = _fake_run(tmp_path / "seed-a", "full", 15000, [0.85, 0.90], [7.0, 6.8], recipe=seed_a)
    a_5k = _fake_run(tmp_path / "seed-a-5k", "5k", 4000, [0.80, 0.86], [8.0, 7.5], recipe=seed_a)
    b = _fake_run(tmp_path / "seed-b", "5k", 4000, [0.75, 0.84, 0.85], [7.0, 6.5, 6.0], recipe=seed_b,
                  speed=20.0, ms=9.0)
    b_pre = _fake_run(tmp_path / "b-pre", "5k", 4000, [0.82, 0.87], [6.4, 6.1],
                      recipe={**seed_b, "preprocessing": "xception"}, speed=20.0, ms=9.0)
    stopped = _fake_run(tmp_path / "xc", "5k", 4000, [0.80, 0.81], [6.0, 6.2], recipe=get_recipe("xception").to_dict(),
                        speed=20.0, ms=9.0, planned=60)
    older = {k: v for k, v in get_recipe("xception").to_dict().items() if k != "zoom_fraction"}  # before that setting
    (stopped / "config.json").write_text(json.dumps({"train_images": 4000, "val_images": 1000, "recipe": older}))
    balanced = _fake_run(tmp_path / "xc-balanced", "5k", 4000, [0.86, 0.88], [6.1, 6.0], speed=20.0, ms=9.0,
                         recipe={**get_recipe("xception").to_dict(), "loss_weights": {"gender": 1.0, "age": 0.01}})
    distribution = _fake_run(tmp_path / "xc-distribution", "5k", 4000, [0.85, 0.87], [6.3, 6.1], speed=20.0, ms=9.0,
                             recipe={**get_recipe("xception").to_dict(), "age_output": "distribution",
                                     "loss_weights": {"gender": 1.0, "age": 0.1}})
    out = tmp_path / "compare.md"
    assert main(["compare", *map(str, (a_full, a_5k, b, b_pre, stopped, balanced, distribution)),
                 "--out", str(out)]) == 0
    report = out.read_text()
    assert "| seed-b | 5k (4000/1000) | 3 / 140 |" in report
    assert ("On protocol 5k (4,000 training images, the same split for both), gender: Model A 86.00% (seed-a-5k) "
            "against Model B 88.00% (xc-balanced): the report's \"A is better on gender\" **does not hold**") in report
    assert "age: Model B 6.00 years (seed-b) against Model A 7.50 (seed-a-5k)" in report and "**holds**" in report
    assert "Model A trains at 50 images/s against Model B's 20, 3.2 against 9.0 ms per face" in report
    assert "credits the model with +4.00 points of gender accuracy and -0.70 years of MAE" in report
    assert "| b-pre | seed-b | preprocessing=xception | 2 | 87.00% (+3.00 points) | 6.10 (-0.40) |" in report
    assert "Shortened (fewer epochs than their recipe" in report and "seed-b (3 of 140)" in report
    assert "| xc | 5k (4000/1000) | 2 / 60 (early stop) |" in report and "xc (2 of 60)" not in report
    # against the nearest earlier run, not the first: one setting apart
    assert ("| xc-balanced | xc | loss_weights={'gender': 1.0, 'age': 0.01} | 2 | 88.00% (+7.00 points) | "
            "6.00 (+0.00) |") in report
    # two settings from both xc and xc-balanced: against the later one
    assert "| xc-distribution | xc-balanced | age_output=distribution, loss_weights=" in report


def test_a_second_stage_is_compared_with_all_of_the_run_it_continued(tmp_path):
    from agegender.recipes import get_recipe

    xception = get_recipe("xception").to_dict()
    first = _fake_run(tmp_path / "stage1", "holdout", 15000, [0.80, 0.85, 0.90, 0.93], [6.0, 5.5, 5.0, 4.8],
                      recipe=xception)
    second = _fake_run(tmp_path / "stage2", "holdout", 15000, [0.92, 0.94], [4.9, 4.7],
                       recipe={**xception, "learning_rate": 2e-05})
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "init_from": str(first)}))
    out = tmp_path / "compare.md"
    assert main(["compare", str(first), str(second), "--out", str(out)]) == 0
    # against stage 1's best over all 4 epochs (93%, 4.8), not over its first 2 (85%, 5.5)
    assert ("| stage2 | stage1 | continues stage1, learning_rate=2e-05 | all (4 + 2) | 94.00% (+1.00 points) | "
            "4.70 (-0.10) |") in out.read_text()


def test_a_run_from_scratch_is_compared_with_a_run_from_scratch_not_with_a_later_second_stage(tmp_path):
    from agegender.recipes import get_recipe

    xception = get_recipe("xception").to_dict()
    first = _fake_run(tmp_path / "stage1", "holdout", 15000, [0.80, 0.85, 0.90], [6.0, 5.5, 5.0], recipe=xception)
    second = _fake_run(tmp_path / "stage2", "holdout", 15000, [0.92], [4.9],
                       recipe={**xception, "learning_rate": 2e-05})
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "init_from": str(first)}))
    # From scratch again: by settings it is one change from stage2 and two from stage1, but stage2 began from
    # stage1's checkpoint, so only stage1 is a fair baseline.
    other = _fake_run(tmp_path / "other", "holdout", 15000, [0.79, 0.84, 0.89], [6.1, 5.6, 5.1],
                      recipe={**xception, "learning_rate": 2e-05, "color_jitter": 0.2})
    out = tmp_path / "compare.md"
    assert main(["compare", str(first), str(second), str(other), "--out", str(out)]) == 0
    assert ("| other | stage1 | learning_rate=2e-05, color_jitter=0.2 | 3 | 89.00% (-1.00 points) | 5.10 (+0.10) |"
            in out.read_text())


def test_a_run_on_relabelled_data_names_its_data_among_the_changes(tmp_path):
    from agegender.recipes import get_recipe

    xception = get_recipe("xception").to_dict()
    runs = [_fake_run(tmp_path / name, "holdout", 15000, [0.90, 0.92], [5.0, 4.8], recipe=xception)
            for name in ("original", "relabelled")]
    for run, data in zip(runs, ("/data/utkface", "/elsewhere/relabelled.csv")):
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "data": data}))
    out = tmp_path / "compare.md"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    assert "| relabelled | original | data=relabelled.csv | 2 |" in out.read_text()


def test_the_data_effect_compares_the_best_run_on_each_amount_of_data(tmp_path):
    from agegender.recipes import get_recipe

    seed_a = get_recipe("seed-a").to_dict()
    best = _fake_run(tmp_path / "a-best", "full", 15000, [0.90], [6.8], recipe=seed_a)
    later = _fake_run(tmp_path / "a-later", "full", 15000, [0.88], [6.9], recipe=seed_a)  # listed last, not best
    small = _fake_run(tmp_path / "a-5k", "5k", 4000, [0.86], [7.5], recipe=seed_a)
    out = tmp_path / "c.md"
    assert main(["compare", str(best), str(later), str(small), "--out", str(out)]) == 0
    assert "Model A with 15,000 training images (a-best) reaches 90.00%" in out.read_text()


def test_runs_that_differ_only_in_training_seed_give_the_spread_other_changes_are_read_against(tmp_path):
    from agegender.recipes import get_recipe

    dlib = get_recipe("dlib-resnet").to_dict()

    def run(name, accuracies, maes, planned=None, **settings):
        folder = _fake_run(tmp_path / name, "holdout", 15000, accuracies, maes, recipe={**dlib, **settings},
                           planned=planned)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "init_from": "runs/probe"}))
        return folder

    runs = [run("seed-a", [0.90, 0.93], [4.6, 4.4]),
            run("seed-b", [0.91, 0.92], [4.5, 4.5], training_seed=1338),
            run("seed-c", [0.92, 0.94], [4.7, 4.6], training_seed=1339),
            run("bigger", [0.93, 0.935], [4.6, 4.45], image_size=168),
            run("longer", [0.95, 0.96], [4.3, 4.2], planned=32, epochs=32)]
    out = tmp_path / "compare.md"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    report = out.read_text()
    # seeds 1337 (the split's, training_seed -1), 1338, 1339; lowest MAEs 4.4, 4.5, 4.6
    assert ("| seed-a (seed 1337), seed-b (seed 1338), seed-c (seed 1339) | 3 | 93.00 +- 1.00 (92.00-94.00) | "
            "4.50 +- 0.10 (4.40-4.60) | reseeding alone |") in report
    assert "| bigger (image_size=168) | 1 | 93.50 (+0.5 sd) | 4.45 (-0.5 sd) | gender within the seeds' range, " \
           "age within the seeds' range |" in report
    # more epochs is another experiment, not a fourth seed
    assert "| longer (epochs=32) | 1 | 96.00 (+3.0 sd) | 4.20 (-3.0 sd) | gender beyond it, age beyond it |" in report


def test_no_reseeding_section_without_two_seeds_of_one_experiment(tmp_path):
    a = _fake_run(tmp_path / "a", "holdout", 15000, [0.90], [5.0])
    b = _fake_run(tmp_path / "b", "holdout", 15000, [0.91], [4.9])
    out = tmp_path / "compare.md"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert "## Reseeding" not in out.read_text()


def test_two_seed_groups_from_one_checkpoint_are_compared_by_their_means(tmp_path):
    from agegender.recipes import get_recipe

    dlib = get_recipe("dlib-resnet").to_dict()

    def run(name, accuracy, mae, **settings):
        folder = _fake_run(tmp_path / name, "holdout", 15000, [accuracy], [mae], recipe={**dlib, **settings})
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "init_from": "runs/probe"}))
        return folder

    runs = [run("small-1", 0.92, 4.40), run("small-2", 0.93, 4.50, training_seed=1338),
            run("large-1", 0.94, 4.40, image_size=168), run("large-2", 0.95, 4.50, image_size=168, training_seed=1338)]
    out = tmp_path / "compare.md"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    # means 92.5 against 94.5 (sd 0.71 each: standard error 0.71); MAEs 4.45 both
    assert ("| large-1, large-2 (image_size=168; seeds 1337, 1338) | 2 | 94.50 (+2.00 +- 0.71) | 4.450 (+0.000 +- "
            "0.071) | gender beyond two standard errors, age within two standard errors |") in out.read_text()
