"""agegender info: what a model file holds, read without running it."""
from __future__ import annotations

import json
import shutil

from agegender.cli import main
from agegender.ensemble import average_models


def test_info_shows_an_uncalibrated_model_as_such(tiny_onnx, capsys):
    assert main(["info", str(tiny_onnx)]) == 0
    text = capsys.readouterr().out
    assert f"{tiny_onnx} (" in text and "input: 32 x 32 RGB" in text and "test-time flip: off" in text
    assert "gender temperature: none (not calibrated)" in text and "age interval: none" in text
    assert "members" not in text


def test_info_shows_calibration_flip_and_members_with_their_weights(tiny_onnx, utk_folder, tmp_path, capsys):
    pair = average_models([tiny_onnx, tiny_onnx], tmp_path / "pair.onnx", age_weights=[1, 3])
    assert main(["calibrate", str(pair), "--data", str(utk_folder), "--protocol", "full", "--flip"]) == 0
    calibration = json.loads(capsys.readouterr().out)
    assert main(["info", str(pair)]) == 0
    text = capsys.readouterr().out
    assert "test-time flip: on" in text and f"gender temperature: {calibration['gender_temperature']}" in text
    table = calibration["age_interval"]
    assert f"  predicted age 0-10: {table['low'][0]:+.1f} to {table['high'][0]:+.1f} years ({table['faces'][0]} faces)" in text
    assert "  predicted age 60+:" in text and "the val split of protocol full" in text
    assert "gender weight 0.5, age weight 0.25)" in text and "gender weight 0.5, age weight 0.75)" in text

    assert main(["info", str(pair), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size_bytes"] == pair.stat().st_size and info["test_time_flip"] is True
    assert [member["age_weight"] for member in info["members"]] == [0.25, 0.75]


def test_info_of_a_run_folder_reads_its_checkpoint(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained_run / "best.keras", run)  # a run not yet exported
    assert main(["info", str(run)]) == 0
    text = capsys.readouterr().out
    assert f"{run / 'best.keras'} (" in text and "keras)" in text and "input: 32 x 32 RGB" in text


def test_info_of_a_missing_or_foreign_file_is_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.onnx")]) == 2
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    assert main(["info", str(junk)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "not found" in errors[0] and "not a loadable ONNX model" in errors[1]
