"""Metrics overall and per group, Markdown tables, and the learning-curve figures of a run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .calibration import gender_reliability
from .data import AGE_BRACKETS, GENDERS, RACES, age_bracket


def _scores(part: pd.DataFrame) -> dict:
    scores = {
        "n": int(len(part)),
        "gender_accuracy": float(((part["female_probability"] >= 0.5).astype(int) == part["gender"]).mean()),
        "age_mae": float((part["predicted_age"] - part["age"]).abs().mean()),
    }
    if "age_low" in part:  # the share of true ages inside the model's calibrated interval
        scores["age_interval_coverage"] = float(part["age"].between(part["age_low"], part["age_high"]).mean())
    return scores


# Single attributes, then their intersections with gender (Buolamwini & Gebru 2018: a model can be fair to each
# attribute alone and still fail, say, dark-skinned women).
GROUPS = (("age_bracket", "age"), ("gender", "gender"), ("race", "race"),
          ("age_bracket_gender", "age and gender"), ("race_gender", "race and gender"))


def group_rows(frame: pd.DataFrame) -> dict[str, dict[str, pd.Index]]:
    """The rows of each non-empty group: per age bracket (in age order), per gender and per race (where
    labelled), and per age bracket and per race within each gender."""
    brackets = frame["age"].map(age_bracket)
    sections = {"age_bracket": {name: brackets.index[brackets == name]
                                for name in (age_bracket(low) for low, _ in AGE_BRACKETS)},
                "gender": {GENDERS[g]: frame.index[frame["gender"] == g] for g in (0, 1)}}
    if "race" in frame and frame["race"].notna().any():
        races = frame["race"].dropna().astype(int)
        sections["race"] = {RACES[r]: races.index[races == r] for r in sorted(races.unique())}
    for section in ("age_bracket", "race"):
        if section in sections:
            sections[f"{section}_gender"] = {f"{name} {gender}": rows.intersection(within)
                                             for name, rows in sections[section].items()
                                             for gender, within in sections["gender"].items()}
    return {section: {name: rows for name, rows in groups.items() if len(rows)}
            for section, groups in sections.items()}


def breakdown(frame: pd.DataFrame) -> dict:
    """Gender accuracy and age MAE overall, per age bracket, per gender and per race (where labelled), and per
    age bracket and race within each gender.

    `frame` holds true `age`, `gender` (0 male, 1 female), optional `race`, and `predicted_age`,
    `female_probability`, optional `age_low`, `age_high`. `worst` names the group with the highest MAE and the
    one with the lowest gender accuracy; `gender_reliability` compares confidence with the share correct.
    """
    if frame.empty:
        raise ValueError("nothing to evaluate: no readable labelled images")
    result = {"overall": _scores(frame)}
    for section, groups in group_rows(frame).items():
        result[section] = {name: _scores(frame.loc[rows]) for name, rows in groups.items()}
    result["worst"] = {section: {"age_mae": max(result[section], key=lambda g: result[section][g]["age_mae"]),
                                 "gender_accuracy": min(result[section],
                                                        key=lambda g: result[section][g]["gender_accuracy"])}
                       for section, _ in GROUPS if result.get(section)}
    result["gender_reliability"] = gender_reliability(frame["female_probability"], frame["gender"])
    return result


def breakdown_markdown(result: dict, title: str) -> str:
    overall = result["overall"]
    coverage = "age_interval_coverage" in overall
    lines = [f"# {title}", "", "| group | images | gender accuracy | age MAE (years) |"
             + (" true age inside the 80% interval |" if coverage else ""),
             "|---|---:|---:|---:|" + ("---:|" if coverage else "")]

    def row(name: str, scores: dict) -> str:
        cells = f"| {name} | {scores['n']} | {scores['gender_accuracy']:.2%} | {scores['age_mae']:.2f} |"
        return cells + (f" {scores['age_interval_coverage']:.1%} |" if coverage else "")

    lines.append(row("**overall**", overall))
    for section, label in GROUPS:
        lines.extend(row(f"{label} {name}", scores) for name, scores in result.get(section, {}).items())
    if "worst" in result:
        lines += ["", "Worst groups: " + "; ".join(
            f"by {dict(GROUPS)[section]}, **{worst['age_mae']}** for age (MAE) and **{worst['gender_accuracy']}** "
            "for gender" for section, worst in result["worst"].items()) + "."]
    if "gender_reliability" in result:
        reliability = result["gender_reliability"]
        lines += ["", "Gender reliability (confidence of the predicted gender against the share correct; expected "
                  f"calibration error {reliability['expected_calibration_error']:.3f}):", "",
                  "| confidence | faces | mean confidence | share correct |", "|---|---:|---:|---:|"]
        lines += [f"| {b['confidence']} | {b['n']} | {b['mean_confidence']:.3f} | {b['accuracy']:.3f} |"
                  for b in reliability["bins"]]
    return "\n".join(lines) + "\n"


def evaluate_frame(model, frame: pd.DataFrame, keep_distribution: bool = False):
    """`frame` with `predicted_age` and `female_probability` from `model` (unreadable images dropped); with
    `keep_distribution`, also the faces' predicted age distributions (None for a model without one)."""
    from .images import load_crops

    pixels, readable = load_crops(frame["path"].tolist(), model.image_size)
    frame = frame[readable]
    outputs = model.predict_outputs(pixels[readable])
    frame = frame.assign(predicted_age=outputs["age"], female_probability=outputs["gender"])
    if "age_low" in outputs:
        frame = frame.assign(age_low=outputs["age_low"], age_high=outputs["age_high"])
    return (frame, outputs.get("age_distribution")) if keep_distribution else frame


def single_face_ms(model, crop: np.ndarray, repeats: int = 50) -> float:
    """Median milliseconds for one face through `model` (after a warm-up call)."""
    import time

    model.predict_pixels(crop)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_pixels(crop)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2)


def write_evaluation(result: dict, out_prefix: Path, title: str) -> tuple[Path, Path]:
    json_path, md_path = out_prefix.with_suffix(".json"), out_prefix.with_suffix(".md")
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(breakdown_markdown(result, title))
    return json_path, md_path


def plot_history(history: pd.DataFrame, out_dir: Path, title: str) -> list[Path]:
    """The report's two figures: gender loss + accuracy, and age loss + MAE, training against validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = history["epoch"] + 1
    paths = []
    for task, metric, label in (("gender", "accuracy", "accuracy"), ("age", "mae", "MAE (years)")):
        figure, axes = plt.subplots(1, 2, figsize=(11, 4))
        for axis, key, name in ((axes[0], f"{task}_loss", "loss"), (axes[1], f"{task}_{metric}", label)):
            axis.plot(epochs, history[key], label="training")
            if f"val_{key}" in history:  # a refit trains without a validation part
                axis.plot(epochs, history[f"val_{key}"], label="validation")
            axis.set_xlabel("epoch")
            axis.set_ylabel(name)
            axis.set_title(f"{task} {name}")
            axis.grid(alpha=0.3)
            axis.legend()
        figure.suptitle(title)
        figure.tight_layout()
        path = out_dir / f"{task}_curves.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


def history_summary(history: pd.DataFrame) -> dict:
    """Best validation gender accuracy and lowest validation MAE with their (1-based) epochs, and final values;
    a refit's history (no validation) gives its epochs and final training values only."""
    last = history.iloc[-1]
    if "val_loss" not in history:
        return {"epochs_run": int(len(history)),
                "final": {key: float(last[key]) for key in ("gender_accuracy", "age_mae", "loss")}}
    best_acc = history["val_gender_accuracy"].idxmax()
    best_mae = history["val_age_mae"].idxmin()
    return {
        "epochs_run": int(len(history)),
        "best_val_gender_accuracy": float(history.loc[best_acc, "val_gender_accuracy"]),
        "best_val_gender_accuracy_epoch": int(history.loc[best_acc, "epoch"]) + 1,
        "lowest_val_age_mae": float(history.loc[best_mae, "val_age_mae"]),
        "lowest_val_age_mae_epoch": int(history.loc[best_mae, "epoch"]) + 1,
        "final": {key: float(last[key]) for key in ("gender_accuracy", "age_mae", "val_gender_accuracy",
                                                    "val_age_mae", "loss", "val_loss")},
    }
