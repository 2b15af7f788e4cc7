import json

import pandas as pd

from agegender.cli import main


def _fake_run(folder, protocol, train_images, accuracies, maes, seconds=60.0):
    folder.mkdir(parents=True)
    epochs = len(accuracies)
    pd.DataFrame({
        "epoch": range(epochs), "gender_loss": [0.5] * epochs, "val_gender_loss": [0.6] * epochs,
        "gender_accuracy": [0.9] * epochs, "val_gender_accuracy": accuracies, "age_loss": [50.0] * epochs,
        "val_age_loss": [60.0] * epochs, "age_mae": [5.0] * epochs, "val_age_mae": maes,
        "loss": [51.0] * epochs, "val_loss": [61.0] * epochs, "seconds": [seconds] * epochs,
    }).to_csv(folder / "history.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({
        "protocol": protocol, "epochs_planned": epochs, "wall_seconds": seconds * epochs,
        "train_images_per_second": 50.0, "parameters": 1234, "onnx_megabytes": 5.0, "single_face_ms": 3.2}))
    (folder / "config.json").write_text(json.dumps({
        "train_images": train_images, "val_images": train_images // 4, "recipe": {"early_stopping_patience": 0}}))
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
