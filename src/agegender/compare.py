"""Compare finished runs: learning curves side by side, one table of figures, and what they conclude."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .evaluate import history_summary

CURVES = (("gender_loss", "gender loss"), ("gender_accuracy", "gender accuracy"),
          ("age_loss", "age loss (MSE)"), ("age_mae", "age MAE (years)"))


def load_run(folder: Path) -> dict:
    folder = Path(folder)
    for name in ("history.csv", "metrics.json", "config.json"):
        if not (folder / name).is_file():
            raise ValueError(f"{folder} is not a finished run (no {name}); finish it with agegender train --resume")
    breakdown_path = folder / "val_breakdown.json"
    return {
        "name": folder.name,
        "history": pd.read_csv(folder / "history.csv"),
        "metrics": json.loads((folder / "metrics.json").read_text()),
        "config": json.loads((folder / "config.json").read_text()),
        "breakdown": json.loads(breakdown_path.read_text()) if breakdown_path.is_file() else {},
    }


def plot_curves(runs: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, (key, title) in zip(axes.ravel(), CURVES):
        for colour, run in zip(colours, runs):
            history = run["history"]
            axis.plot(history["epoch"] + 1, history[key], color=colour, linestyle="--", alpha=0.7,
                      label=f"{run['name']} training")
            axis.plot(history["epoch"] + 1, history[f"val_{key}"], color=colour, label=f"{run['name']} validation")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        if "loss" in key:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def _cell(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def comparison_table(runs: list[dict]) -> str:
    brackets = sorted({b for run in runs for b in run["breakdown"].get("age_bracket", {})},
                      key=lambda b: int(b.split("-")[0].rstrip("+")))
    races = sorted({r for run in runs for r in run["breakdown"].get("race", {})})
    header = (["run", "protocol (train/val images)", "epochs run / planned", "best val gender acc (epoch)",
               "lowest val MAE (epoch)"] + [f"MAE {b}" for b in brackets] + [f"gender acc {r}" for r in races]
              + ["wall time", "train images/s", "parameters", "ONNX MB", "ms per face"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        metrics, config, breakdown = run["metrics"], run["config"], run["breakdown"]
        summary = history_summary(run["history"])
        row = [run["name"],
               f"{metrics['protocol']} ({config['train_images']}/{config['val_images']})",
               f"{summary['epochs_run']} / {metrics['epochs_planned']}",
               f"{summary['best_val_gender_accuracy']:.2%} ({summary['best_val_gender_accuracy_epoch']})",
               f"{summary['lowest_val_age_mae']:.2f} ({summary['lowest_val_age_mae_epoch']})"]
        row += [_cell(breakdown.get("age_bracket", {}).get(b, {}).get("age_mae"), ".2f") for b in brackets]
        row += [_cell(breakdown.get("race", {}).get(r, {}).get("gender_accuracy"), ".1%") for r in races]
        row += [f"{metrics['wall_seconds'] / 60:.0f} min", f"{metrics['train_images_per_second']:.0f}",
                f"{metrics['parameters']:,}", _cell(metrics.get("onnx_megabytes"), ".1f"),
                _cell(metrics.get("single_face_ms"), ".1f")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def conclusions(runs: list[dict]) -> list[str]:
    """Statements read off the numbers: who wins each task, who converges first, and on what data."""
    summaries = {run["name"]: history_summary(run["history"]) for run in runs}
    best_gender = max(summaries, key=lambda name: summaries[name]["best_val_gender_accuracy"])
    best_age = min(summaries, key=lambda name: summaries[name]["lowest_val_age_mae"])
    fastest = min(summaries, key=lambda name: summaries[name]["best_val_gender_accuracy_epoch"])
    lines = [
        f"Gender: **{best_gender}** reaches the highest validation accuracy "
        f"({summaries[best_gender]['best_val_gender_accuracy']:.2%}).",
        f"Age: **{best_age}** reaches the lowest validation MAE ({summaries[best_age]['lowest_val_age_mae']:.2f} years).",
        f"Convergence: **{fastest}** reaches its best gender accuracy first "
        f"(epoch {summaries[fastest]['best_val_gender_accuracy_epoch']}).",
    ]
    sizes = {run["name"]: run["config"]["train_images"] for run in runs}
    if len(set(sizes.values())) > 1:
        lines.append("The runs trained on different amounts of data ("
                     + ", ".join(f"{name}: {count:,} images" for name, count in sizes.items())
                     + "); only runs on the same split compare the models themselves.")
    short = [run["name"] for run in runs if summaries[run["name"]]["epochs_run"] < run["metrics"]["epochs_planned"]
             and not run["config"]["recipe"].get("early_stopping_patience")]
    if short:
        lines.append("Shortened (fewer epochs than the recipe): " + ", ".join(short) + ".")
    return lines


def compare(run_folders: list[Path], out: Path) -> Path:
    if not run_folders:
        raise ValueError("name at least one run folder to compare")
    runs = [load_run(folder) for folder in run_folders]
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = plot_curves(runs, out.with_name(out.stem + "_curves.png"))
    text = ["# Comparison of runs", "",
            "Validation figures of each run's best checkpoint (lowest validation loss); learning curves per epoch.",
            "", comparison_table(runs), "", "## What the numbers say", "",
            *[f"- {line}" for line in conclusions(runs)], "", f"![learning curves]({figure.name})", ""]
    out.write_text("\n".join(text))
    return out
