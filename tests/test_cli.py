import json

import numpy as np
import pytest
from PIL import Image

from agegender.cli import main
from conftest import EXAMPLE, interrupt_search


def test_predict_aligned_lists_crops_and_reports_unreadable_files(trained_run, utk_folder, tmp_path, capsys):
    crops = sorted(utk_folder.iterdir())[:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    code = main(["predict", *map(str, crops), str(broken), "--model", str(trained_run), "--aligned", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [row["file"] for row in result["faces"]] == list(map(str, crops))
    row = result["faces"][0]
    assert row["gender"] in ("male", "female") and 0.5 <= row["gender_probability"] <= 1 and row["age"] >= 0
    assert row["box"] == [0, 0, 48, 48] and row["landmarks"] is None
    assert len(result["errors"]) == 1 and "broken.jpg" in result["errors"][0]


def test_predict_csv_over_a_folder(trained_run, utk_folder, capsys):
    assert main(["predict", str(utk_folder), "--model", str(trained_run / "best.keras"), "--aligned", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == (
        "file,face,x0,y0,x1,y1,age,age_low,age_high,gender,gender_probability,female_probability,detection_score,detector,"
        "landmarks")
    assert len(lines) == 1 + len(list(utk_folder.iterdir()))


def test_predict_fails_only_when_nothing_could_be_processed(trained_run, tmp_path, capsys):
    (tmp_path / "a.jpg").write_text("text")
    assert main(["predict", str(tmp_path / "a.jpg"), "--model", str(trained_run)]) == 1
    assert "a.jpg: not an image" in capsys.readouterr().err


def test_predict_writes_each_photo_as_it_is_done_and_keeps_them_when_interrupted(trained_run, utk_folder,
                                                                                  monkeypatch, capsys):
    crops = sorted(map(str, utk_folder.iterdir()))[:4]
    seen = interrupt_search(monkeypatch, at=3)  # Ctrl-C while the third photo is read
    for output in ("--csv", "--jsonl", "--json", None):
        seen.clear()
        code = main(["predict", *crops, "--model", str(trained_run), "--aligned", "--workers", "1",
                     *([output] if output else [])])
        captured = capsys.readouterr()
        assert code == 130 and "interrupted after 2 of 4 photos" in captured.err
        lines = captured.out.strip().splitlines()
        if output == "--csv":
            assert len(lines) == 3 and lines[1].startswith(crops[0] + ",0,")
        elif output == "--jsonl":
            assert [json.loads(line)["file"] for line in lines] == crops[:2]
            assert json.loads(lines[0])["faces"][0]["box"] == [0, 0, 48, 48]
        elif output == "--json":
            result = json.loads(captured.out)
            assert result["interrupted"] and [row["file"] for row in result["faces"]] == crops[:2]
        else:
            assert len(lines) == 2 and lines[1].startswith(crops[1] + " face 0: age ")


def test_predict_jsonl_has_a_line_for_every_photo_read_or_not(trained_run, utk_folder, tmp_path, capsys):
    crop = sorted(map(str, utk_folder.iterdir()))[0]
    (tmp_path / "notes.jpg").write_text("hello")
    assert main(["predict", crop, str(tmp_path / "notes.jpg"), "--model", str(trained_run), "--jsonl"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["file"] == crop and first["faces"] == []  # a 48 px crop searched as a photo: no face in it
    assert second["file"] == str(tmp_path / "notes.jpg") and second["error"].startswith(f"{second['file']}: not an image")


def test_annotated_copies_of_photos_with_the_same_name_do_not_overwrite_each_other(trained_run, utk_folder,
                                                                                   tmp_path):
    crop = sorted(utk_folder.iterdir())[0]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "photo.jpg").write_bytes(crop.read_bytes())
    assert main(["predict", str(tmp_path / "a"), str(tmp_path / "b"), "--model", str(trained_run), "--aligned",
                 "--annotate", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo-2.annotated.jpg", "photo.annotated.jpg"]


def test_evaluate_writes_json_and_markdown(trained_run, utk_folder, tmp_path, capsys):
    code = main(["evaluate", str(trained_run), "--split", str(trained_run / "split.csv"),
                 "--out", str(tmp_path / "eval")])
    assert code == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    split_rows = sum(1 for line in (trained_run / "split.csv").read_text().splitlines()[1:] if line.endswith(",val"))
    assert result["overall"]["n"] == split_rows
    assert set(result) >= {"overall", "age_bracket", "gender", "race"}
    assert "| **overall** |" in capsys.readouterr().out
    assert main(["evaluate", str(trained_run), "--data", str(utk_folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["n"] == len(list(utk_folder.iterdir()))
    assert main(["evaluate", str(trained_run)]) == 2
    assert "--data" in capsys.readouterr().err
    # a CSV that is not a split file, e.g. a labels.csv passed as --split
    (tmp_path / "labels.csv").write_text("path,age,gender\nx.jpg,30,1\n")
    assert main(["evaluate", str(trained_run), "--split", str(tmp_path / "labels.csv")]) == 2
    assert capsys.readouterr().err == (f"agegender: error: {tmp_path / 'labels.csv'} is not a split file: it lacks "
                                       "the column(s) race, group, split (expected a run's split.csv: "
                                       "path,age,gender,race,group,split)\n")


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["predict", "x.jpg", "--model", str(tmp_path / "none.keras")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty")]) == 2  # rather than print nothing and succeed
    assert capsys.readouterr().err == f"agegender: error: no photos found in {tmp_path / 'empty'}\n"
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_onnx_export_predicts_what_keras_predicts(trained_run, utk_folder, tmp_path, capsys):
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", str(trained_run), "--out", str(onnx_path)]) == 0
    crops = list(map(str, sorted(utk_folder.iterdir())[:8]))
    rows = {}
    for model in (str(trained_run / "best.keras"), str(onnx_path)):
        capsys.readouterr()
        assert main(["predict", *crops, "--model", model, "--aligned", "--json"]) == 0
        rows[model] = json.loads(capsys.readouterr().out)["faces"]
    keras_rows, onnx_rows = rows.values()
    for k, o in zip(keras_rows, onnx_rows):
        assert abs(k["age"] - o["age"]) <= 0.1 and abs(k["female_probability"] - o["female_probability"]) < 1e-3
    assert main(["export", str(onnx_path), "--out", str(tmp_path / "again.onnx")]) == 2


@pytest.mark.parametrize("mode", ["dense", "static"])
def test_int8_export_is_smaller_and_still_agrees(trained_run, utk_folder, tmp_path, capsys, mode):
    full, small = tmp_path / "full.onnx", tmp_path / "small.onnx"
    assert main(["export", str(trained_run), "--out", str(full)]) == 0
    int8 = ["--int8", mode] if mode == "static" else ["--int8"]  # a bare --int8 is dense
    assert main(["export", str(trained_run), "--out", str(small), *int8]) == 0
    assert small.stat().st_size < 0.6 * full.stat().st_size  # the dense layers hold most of this tiny model
    from agegender.predictor import AgeGenderModel
    from agegender.images import load_crops

    pixels, _ = load_crops([str(p) for p in sorted(utk_folder.iterdir())[:32]], 32)
    (age_full, female_full), (age_small, female_small) = (AgeGenderModel(m).predict_pixels(pixels) for m in (full, small))
    assert abs(age_full - age_small).mean() < 1.0
    assert ((female_full >= 0.5) == (female_small >= 0.5)).mean() >= 0.9
    assert AgeGenderModel(small).metadata["weights"] == f"int8 {mode}"
    if mode == "static":  # the input's scaling stays float32 (int8_graph.float_preprocessing)
        import onnx

        graph = onnx.load(str(small)).graph
        readers = [node.op_type for node in graph.node if graph.input[0].name in node.input]
        assert readers and "QuantizeLinear" not in readers


def test_static_int8_of_a_bare_model_file_needs_calibration_images(trained_run, utk_folder, tmp_path, capsys):
    out = tmp_path / "static.onnx"
    assert main(["export", str(trained_run / "best.keras"), "--out", str(out), "--int8", "static"]) == 2
    assert "needs calibration images" in capsys.readouterr().err and not out.exists()
    crops = tmp_path / "crops"  # unlabelled face crops are enough
    crops.mkdir()
    for index, image in enumerate(sorted(utk_folder.iterdir())[:20]):
        (crops / f"face{index}.jpg").write_bytes(image.read_bytes())
    assert main(["export", str(trained_run / "best.keras"), "--out", str(out), "--int8", "static",
                 "--calibration-data", str(crops)]) == 0
    assert out.is_file()


def test_calibrate_stores_intervals_and_flip_that_predict_and_evaluate_then_use(tiny_onnx, utk_folder, tmp_path,
                                                                                capsys):
    import shutil

    from agegender.predictor import AgeGenderModel

    model = tmp_path / "calibrated.onnx"
    shutil.copy(tiny_onnx, model)
    rows = ["--data", str(utk_folder), "--protocol", "full"]
    assert main(["calibrate", str(model), *rows, "--flip"]) == 0
    stored = json.loads(capsys.readouterr().out)
    table, temperature = stored["age_interval"], stored["gender_temperature"]
    loaded = AgeGenderModel(model)
    assert loaded.flip and loaded.age_interval == table and loaded.metadata["image_size"] == 32
    assert loaded.gender_temperature == temperature > 0

    crop = sorted(utk_folder.iterdir())[0]
    assert main(["predict", str(crop), "--model", str(model), "--aligned", "--json"]) == 0
    face = json.loads(capsys.readouterr().out)["faces"][0]
    from agegender.calibration import age_intervals

    low, high = age_intervals(np.array([face["age"]]), table)  # this tiny model's interval need not hold its guess
    # The printed age and bounds are each rounded to 0.1 year, so recomputing from the rounded age is off by <= 0.1.
    assert (face["age_low"], face["age_high"]) == pytest.approx((low[0], high[0]), abs=0.101) and low < high
    pixels = np.asarray(Image.open(crop).convert("RGB").resize((32, 32), Image.BILINEAR))[None]
    plain, mirrored = (AgeGenderModel(tiny_onnx).predict_pixels(p)[0] for p in (pixels, pixels[:, :, ::-1]))
    assert face["age"] == pytest.approx(float((plain + mirrored)[0] / 2), abs=0.06)
    from agegender.calibration import scale_gender

    raw_female = AgeGenderModel(tiny_onnx, flip=True).predict_pixels(pixels)[1]
    female = float(scale_gender(raw_female, temperature)[0])
    assert face["gender_probability"] == pytest.approx(female if face["gender"] == "female" else 1 - female, abs=1e-3)
    assert main(["calibrate", str(model), *rows, "--flip"]) == 0  # again: fitted on raw outputs, so the same
    assert json.loads(capsys.readouterr().out)["gender_temperature"] == temperature

    assert main(["evaluate", str(model), *rows, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["overall"]["age_interval_coverage"] <= 1.0 and "worst" in result
    assert main(["calibrate", str(model), *rows, "--split-name", "test"]) == 2
    assert "no 'test' rows" in capsys.readouterr().err
    assert main(["calibrate", str(tiny_onnx.parent / "missing.onnx"), *rows]) == 2


def test_a_refit_takes_the_calibration_of_the_model_it_refits(tiny_onnx, utk_folder, tmp_path, capsys):
    import shutil

    from agegender.predictor import AgeGenderModel

    fitted, refit = tmp_path / "fitted.onnx", tmp_path / "refit.onnx"
    shutil.copy(tiny_onnx, fitted)
    shutil.copy(tiny_onnx, refit)
    assert main(["calibrate", str(refit), "--like", str(fitted)]) == 2  # nothing to copy yet
    assert "holds no calibration to copy" in capsys.readouterr().err
    assert main(["calibrate", str(fitted), "--data", str(utk_folder), "--protocol", "full", "--flip"]) == 0
    capsys.readouterr()
    assert main(["calibrate", str(refit), "--like", str(fitted), "--data", str(utk_folder)]) == 2
    assert "without --data" in capsys.readouterr().err
    assert main(["calibrate", str(refit), "--like", str(fitted), "--no-flip"]) == 2
    assert "calibrated with test-time flip" in capsys.readouterr().err
    assert AgeGenderModel(refit).gender_temperature is None  # a refused copy writes nothing

    assert main(["calibrate", str(refit), "--like", str(fitted)]) == 0
    source, copy = AgeGenderModel(fitted), AgeGenderModel(refit)
    assert copy.flip and copy.age_interval == source.age_interval
    assert copy.gender_temperature == source.gender_temperature > 0
    assert copy.metadata["calibrated_on"] == f"{source.metadata['calibrated_on']} (copied from fitted.onnx)"


def test_calibrating_a_distribution_model_keeps_its_own_intervals_and_widens_them(utk_folder, tmp_path, capsys):
    from agegender.calibration import distribution_intervals
    from agegender.predictor import AgeGenderModel
    from agegender.recipes import get_recipe
    from agegender.train import train

    recipe = get_recipe("seed-a").with_overrides(image_size=32, batch_size=16, age_output="distribution")
    train(recipe, str(utk_folder), tmp_path / "run", overrides={"epochs": 1}, verbose=0)
    model = tmp_path / "run" / "model.onnx"
    rows = ["--data", str(utk_folder), "--protocol", "full"]
    assert main(["calibrate", str(model), *rows, "--no-flip"]) == 0
    table = json.loads(capsys.readouterr().out)["age_interval"]
    assert len(table["widen_distribution"]) == 5 and "low" not in table

    loaded = AgeGenderModel(model)
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.BILINEAR))
                       for p in sorted(utk_folder.iterdir())[:8]])
    outputs = loaded.predict_outputs(pixels)
    own_low, own_high = distribution_intervals(outputs["age_distribution"])
    widen = np.asarray(table["widen_distribution"])[np.digitize(outputs["age"], table["edges"])]
    np.testing.assert_allclose(outputs["age_low"], np.maximum(own_low - widen, 0))
    np.testing.assert_allclose(outputs["age_high"], np.maximum(own_high + widen, 0))
    assert main(["evaluate", str(model), *rows, "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["overall"]["age_interval_coverage"] <= 1.0


def test_train_keeps_settings_given_with_set_when_the_matching_flag_is_absent(monkeypatch, tmp_path):
    import agegender.train

    seen = {}

    def fake_train(recipe, data, out, overrides, **kwargs):
        seen.update(overrides)
        return {}

    monkeypatch.setattr(agegender.train, "train", fake_train)
    main(["train", "--recipe", "xception", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
          "--set", "protocol=holdout", "--set", "epochs=3"])
    assert seen["protocol"] == "holdout" and seen["epochs"] == 3
    main(["train", "--recipe", "xception", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
          "--set", "protocol=holdout", "--protocol", "5k"])
    assert seen["protocol"] == "5k"  # an explicit flag still wins


def test_a_folder_or_file_in_the_way_of_an_output_gets_one_line_and_nothing_half_written(
        tiny_onnx, trained_run, utk_folder, tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["average", str(tiny_onnx), str(tiny_onnx), "--out", str(folder)]) == 2
    assert main(["export", str(trained_run), "--out", str(folder)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"agegender: error: --out {folder} is a folder; name the file to write, e.g. {folder / name}"
                      for name in ("average.onnx", "model.onnx")]
    assert not list(folder.iterdir()) and sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    # and a file where a folder is to be made
    photo = next(utk_folder.glob("*.jpg"))
    assert main(["predict", str(photo), "--aligned", "--model", str(tiny_onnx), "--annotate", str(tiny_onnx)]) == 2
    assert capsys.readouterr().err.startswith("agegender: error: [Errno 17] File exists")


@pytest.mark.parametrize("setting, message", [
    (["--epochs", "0"], "epochs=0: expected 1 or more"),
    (["--batch-size", "0"], "batch_size=0: expected 1 or more"),
    (["--set", "learning_rate=-1"], "learning_rate=-1.0, min_learning_rate=1e-06: expected learning rates of 0 or more"),
    (["--set", "image_size=8"], "image_size=8: report_cnn reads faces of at least 16 px"),
    (["--set", "schedule=weird"], "schedule='weird': expected one of plateau, constant, cosine"),
    (["--set", "loss_weights.age=-1"], "loss_weights={'gender': 1.0, 'age': -1.0}: expected weights of 0 or more"),
])
def test_a_setting_no_run_could_train_with_is_refused_before_a_run_folder_exists(setting, message, utk_folder,
                                                                                 tmp_path, capsys):
    assert main(["train", "--data", str(utk_folder), "--out", str(tmp_path / "run"), *setting]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"agegender: error: {message}") and error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_serve_refuses_a_port_or_upload_limit_that_cannot_be(capsys):
    assert main(["serve", "--port", "99999"]) == 2
    assert main(["serve", "--max-upload-mb", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "agegender: error: --port 99999: expected a port number from 0 to 65535",
        "agegender: error: --max-upload-mb 0.0: expected a size above 0"]


def test_predict_reads_a_photo_piped_to_standard_input(trained_run, utk_folder, monkeypatch, capsys):
    import io
    import types

    crop = sorted(utk_folder.iterdir())[0]
    monkeypatch.setattr("sys.stdin", types.SimpleNamespace(buffer=io.BytesIO(crop.read_bytes())))
    assert main(["predict", "-", str(crop), "--model", str(trained_run), "--aligned", "--jsonl"]) == 0
    piped, named = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert piped["file"] == "-" and named["file"] == str(crop)
    assert piped["faces"] == named["faces"] and len(piped["faces"]) == 1
    assert main(["predict", "-", "-", "--model", str(trained_run)]) == 2


def test_ctrl_c_anywhere_ends_with_one_line_and_exit_130(monkeypatch, capsys):
    from agegender import predictor

    def interrupted(*args, **kwargs):  # Ctrl-C while the model loads, before any photo
        raise KeyboardInterrupt

    monkeypatch.setattr(predictor.Predictor, "__init__", interrupted)
    assert main(["predict", str(EXAMPLE)]) == 130
    assert capsys.readouterr().err == "agegender: interrupted\n"
