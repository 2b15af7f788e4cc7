"""Compare finished runs: learning curves side by side, one table of figures, and what they conclude."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import output_file
from .evaluate import history_summary

CURVES = (("gender_loss", "gender loss"), ("gender_accuracy", "gender accuracy"),
          ("age_loss", "age loss (MSE)"), ("age_mae", "age MAE (years)"))


def load_run(folder: Path) -> dict:
    folder = Path(folder)
    for name in ("history.csv", "metrics.json", "config.json"):
        if not (folder / name).is_file():
            raise ValueError(f"{folder} is not a finished run (no {name}); finish it with agegender train --resume")
    config = json.loads((folder / "config.json").read_text())
    if config["recipe"].get("refit"):
        raise ValueError(f"{folder} is a refit (trained on its validation part too): it has no validation figures "
                         "to compare; evaluate it on the test part instead")
    breakdown_path = folder / "val_breakdown.json"
    return {
        "name": folder.name,
        "history": pd.read_csv(folder / "history.csv"),
        "metrics": json.loads((folder / "metrics.json").read_text()),
        "config": config,
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
    header = (["run", "protocol (train/val images)", "epochs run / recipe's", "best val gender acc (epoch)",
               "lowest val MAE (epoch)"] + [f"MAE {b}" for b in brackets] + [f"gender acc {r}" for r in races]
              + ["wall time", "train images/s", "parameters", "ONNX MB", "ms per face"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        metrics, config, breakdown = run["metrics"], run["config"], run["breakdown"]
        summary = history_summary(run["history"])
        epochs = f"{summary['epochs_run']} / {_recipe_epochs(run)}"
        row = [run["name"],
               f"{metrics['protocol']} ({config['train_images']}/{config['val_images']})",
               epochs + (" (early stop)" if _early_stopped(run, summary) else ""),
               f"{summary['best_val_gender_accuracy']:.2%} ({summary['best_val_gender_accuracy_epoch']})",
               f"{summary['lowest_val_age_mae']:.2f} ({summary['lowest_val_age_mae_epoch']})"]
        row += [_cell(breakdown.get("age_bracket", {}).get(b, {}).get("age_mae"), ".2f") for b in brackets]
        row += [_cell(breakdown.get("race", {}).get(r, {}).get("gender_accuracy"), ".1%") for r in races]
        row += [f"{metrics['wall_seconds'] / 60:.0f} min", f"{metrics['train_images_per_second']:.0f}",
                f"{metrics['parameters']:,}", _cell(metrics.get("onnx_megabytes"), ".1f"),
                _cell(metrics.get("single_face_ms"), ".1f")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


MODELS = {"report_cnn": "Model A", "xception": "Model B"}
SAME_RECIPE = ("name", "description", "epochs")  # settings that do not make a run a different experiment
RESEED = "training_seed"  # initialisation, augmentation and shuffling only: the same experiment run again


def _architecture(run: dict) -> str:
    return run["config"]["recipe"].get("architecture", "")


def _early_stopped(run: dict, summary: dict) -> bool:
    """Ended by its own early stopping, before the epochs it planned: complete, not shortened."""
    return bool(run["config"]["recipe"].get("early_stopping_patience")) and \
        summary["epochs_run"] < run["metrics"]["epochs_planned"]


def _recipe_epochs(run: dict) -> int:
    """The epochs of the named recipe the run started from (a run may have been shortened with --epochs)."""
    from .recipes import RECIPES

    name = run["config"]["recipe"].get("name")
    return RECIPES[name].epochs if name in RECIPES else run["metrics"]["epochs_planned"]


def _within(run: dict, epochs: int | None) -> tuple[float, float]:
    """Best validation gender accuracy and lowest validation MAE over the first `epochs` epochs (None: all)."""
    history = run["history"].iloc[:epochs]
    return float(history["val_gender_accuracy"].max()), float(history["val_age_mae"].min())


def _settings(run: dict) -> dict:
    """The run's recipe settings, with today's defaults for settings added since it was trained."""
    import dataclasses

    from .recipes import Recipe

    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(Recipe)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    return {**defaults, **run["config"]["recipe"]}


def _changes(run: dict, base: dict) -> list[str]:
    """The settings of `run` that differ from `base`'s (other than name, description and epochs), and its
    labelled data where that file or folder differs by name (e.g. a relabelled copy of the same images)."""
    base_settings = _settings(base)
    changes = [f"{name}={value}" for name, value in _settings(run).items()
               if name not in SAME_RECIPE and base_settings.get(name) != value]
    data, base_data = (Path(other["config"].get("data") or "").name for other in (run, base))
    if data != base_data:
        changes.append(f"data={data}")
    return changes


def _experiment(run: dict) -> tuple:
    """What makes two runs the same experiment: every setting but the training seed (epochs included), the
    split, the data and the checkpoint it started from."""
    settings = {name: value for name, value in _settings(run).items() if name not in ("name", "description", RESEED)}
    settings["epochs"] = run["metrics"]["epochs_planned"]
    return (json.dumps(settings, sort_keys=True, default=str), run["metrics"]["protocol"],
            run["config"]["train_images"], Path(run["config"].get("data") or "").name,
            Path(run["config"].get("init_from") or "").name)


def seed_groups(runs: list[dict]) -> list[list[dict]]:
    """Runs of one experiment with different training seeds (two or more): how far reseeding alone moves it."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(_experiment(run), []).append(run)
    return [group for group in groups.values()
            if len({_seed(run) for run in group}) > 1]


def _spread(values: list[float], fmt: str, scale: float = 1.0) -> str:
    values = [scale * value for value in values]
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    return f"{mean:{fmt}} +- {sd:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def seed_table(runs: list[dict]) -> list[str]:
    """Each seed group's spread, and every other run started from the same checkpoint against it: a change
    whose figures stay inside the range that reseeding alone gives is not shown to do anything. Another seed
    group from the same checkpoint is read as a whole: the difference of the means and its standard error."""
    lines, groups = [], seed_groups(runs)
    # the start a run shares with others (split, data, checkpoint): only runs from one start are compared
    start = {id(run): (_experiment(run)[1:], _architecture(run)) for run in runs}
    grouped = {id(run) for group in groups for run in group}
    readers: dict[int, list[dict]] = {}  # each other run, read once, against the seed group it differs least from
    for run in runs:
        candidates = [index for index, group in enumerate(groups) if start[id(group[0])] == start[id(run)]]
        if id(run) not in grouped and candidates:
            nearest = min(candidates, key=lambda index: len(_changes_with_epochs(run, groups[index][0])))
            readers.setdefault(nearest, []).append(run)
    for index, group in enumerate(groups):
        accuracies, maes = _figures(group)
        names = ", ".join(f"{run['name']} (seed {_seed(run)})" for run in group)
        lines.append(f"| {names} | {len(group)} | {_spread(accuracies, '.2f', 100)} | {_spread(maes, '.2f')} | "
                     "reseeding alone |")
        lines += [_group_against(other, group) for other in groups[index + 1:]
                  if start[id(other[0])] == start[id(group[0])]]
        for run in readers.get(index, []):
            accuracy, mae = _within(run, None)
            lines.append(f"| {run['name']} ({', '.join(_changes_with_epochs(run, group[0]))}) | 1 | "
                         f"{100 * accuracy:.2f} ({_distance(accuracy, accuracies)}) | {mae:.2f} "
                         f"({_distance(mae, maes)}) | gender {_inside(accuracy, accuracies)}, age "
                         f"{_inside(mae, maes)} |")
    if not lines:
        return []
    return ["| runs | n | best val gender acc, % (mean +- sd, range) | lowest val MAE (mean +- sd, range) | "
            "reading |", "|---|---:|---:|---:|---|", *lines]


def _figures(group: list[dict]) -> tuple[list[float], list[float]]:
    figures = [_within(run, None) for run in group]
    return [a for a, _ in figures], [m for _, m in figures]


def _changes_with_epochs(run: dict, base: dict) -> list[str]:
    changes = _changes(run, base)
    if run["metrics"]["epochs_planned"] != base["metrics"]["epochs_planned"]:
        changes.insert(0, f"epochs={run['metrics']['epochs_planned']}")
    return changes


def _group_against(group: list[dict], base: list[dict]) -> str:
    """One seed group against another: each figure's difference of means, with its standard error from both
    groups' spreads; a difference under two standard errors is not shown."""
    cells, verdicts = [], []
    for (values, base_values), scale, fmt, what in zip(zip(_figures(group), _figures(base)), (100, 1), (".2f", ".3f"),
                                                         ("gender", "age")):
        values, base_values = [scale * v for v in values], [scale * v for v in base_values]
        difference, error = difference_of_means(values, base_values)
        cells.append(f"{np.mean(values):{fmt}} ({difference:+{fmt}} +- {error:{fmt}})")
        verdicts.append(f"{what} {'beyond' if abs(difference) > 2 * error else 'within'} two standard errors")
    changes = [change for change in _changes_with_epochs(group[0], base[0]) if not change.startswith(RESEED)]
    names = ", ".join(run["name"] for run in group)
    return f"| {names} ({', '.join(changes)}; seeds {', '.join(str(_seed(run)) for run in group)}) | " \
           f"{len(group)} | {cells[0]} | {cells[1]} | {', '.join(verdicts)} |"


def difference_of_means(values: list[float], base_values: list[float]) -> tuple[float, float]:
    """mean(values) - mean(base_values), and its standard error from both samples' spreads (two seeds at least
    each): sqrt(sd^2 / n + sd_base^2 / n_base)."""
    difference = float(np.mean(values) - np.mean(base_values))
    error = float(np.sqrt(np.var(values, ddof=1) / len(values) + np.var(base_values, ddof=1) / len(base_values)))
    return difference, error


def _inside(value: float, sample: list[float]) -> str:
    return "within the seeds' range" if min(sample) <= value <= max(sample) else "beyond it"


def _distance(value: float, sample: list[float]) -> str:
    """How many of the seeds' standard deviations a figure lies from their mean."""
    sd = float(np.std(sample, ddof=1))
    return f"{(value - float(np.mean(sample))) / sd:+.1f} sd" if sd > 0 else "n/a"


def _seed(run: dict) -> int:
    """The seed its training used: `training_seed`, or the split's seed where that is -1 (the default)."""
    settings = _settings(run)
    return settings[RESEED] if settings.get(RESEED, -1) >= 0 else settings["seed"]


def ablation_table(runs: list[dict]) -> list[str]:
    """Each run against the nearest run given before it of the same model and protocol (fewest settings
    changed; the latest on a tie): which settings differ, and what that did at an equal number of epochs."""
    rows = []
    for index, run in enumerate(runs):
        key = (_architecture(run), run["metrics"]["protocol"])
        earlier = [other for other in runs[:index] if (_architecture(other), other["metrics"]["protocol"]) == key]
        if not earlier:
            continue
        started_from = Path(run["config"].get("init_from") or "").name
        continued = [other for other in earlier if other["name"] == started_from]
        if continued:  # a second stage: what its extra epochs added to the whole run it started from
            base = continued[0]
            changes = [f"continues {base['name']}", *_changes(run, base)]
            epochs = f"all ({len(base['history'])} + {len(run['history'])})"
            (base_acc, base_mae), (acc, mae) = _within(base, None), _within(run, None)
        else:
            # A run from scratch is compared with runs from scratch: a second stage began elsewhere, so its
            # epochs and figures are not comparable. On a tie the latest (runs are listed in the order they
            # built on each other).
            fresh = [other for other in earlier if not other["config"].get("init_from")]
            base = min(reversed(fresh if started_from == "" and fresh else earlier),
                       key=lambda other: len(_changes(run, other)))
            changes = _changes(run, base)
            epochs = min(len(run["history"]), len(base["history"]))
            (base_acc, base_mae), (acc, mae) = _within(base, epochs), _within(run, epochs)
        rows.append(f"| {run['name']} | {base['name']} | {', '.join(changes) or 'none'} | {epochs} | "
                    f"{acc:.2%} ({100 * (acc - base_acc):+.2f} points) | {mae:.2f} ({mae - base_mae:+.2f}) |")
    if not rows:
        return []
    return ["| run | against | settings changed | epochs compared | best val gender acc (change) | "
            "lowest val MAE (change) |", "|---|---|---|---:|---:|---:|", *rows]


def conclusions(runs: list[dict]) -> list[str]:
    """Statements read off the numbers: who wins each task, whether the report's conclusions hold on a shared
    split, what the amount of training data did, and which runs were shortened."""
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
    lines += _report_claims(runs, summaries)
    lines += _data_effect(runs, summaries)
    short = [f"{run['name']} ({summaries[run['name']]['epochs_run']} of {_recipe_epochs(run)})" for run in runs
             if summaries[run["name"]]["epochs_run"] < _recipe_epochs(run)
             and not _early_stopped(run, summaries[run["name"]])]
    if short:
        lines.append("Shortened (fewer epochs than their recipe; not the full recipe's result): "
                     + ", ".join(short) + ".")
    return lines


def _report_claims(runs: list[dict], summaries: dict) -> list[str]:
    """The report's conclusions (A better and faster on gender, B better on age), checked where Model A and
    Model B trained on the same split."""
    lines = []
    for split in sorted({(run["metrics"]["protocol"], run["config"]["train_images"]) for run in runs}):
        same = [run for run in runs if (run["metrics"]["protocol"], run["config"]["train_images"]) == split]
        a = [run for run in same if _architecture(run) == "report_cnn"]
        b = [run for run in same if _architecture(run) == "xception"]
        if not (a and b):
            continue
        gender = {side: max(group, key=lambda r: summaries[r["name"]]["best_val_gender_accuracy"])
                  for side, group in (("A", a), ("B", b))}
        age = {side: min(group, key=lambda r: summaries[r["name"]]["lowest_val_age_mae"]) for side, group in
               (("A", a), ("B", b))}
        acc = {side: summaries[run["name"]]["best_val_gender_accuracy"] for side, run in gender.items()}
        mae = {side: summaries[run["name"]]["lowest_val_age_mae"] for side, run in age.items()}
        speed = {side: (gender[side]["metrics"]["train_images_per_second"], gender[side]["metrics"].get("single_face_ms"))
                 for side in "AB"}
        where = f"On protocol {split[0]} ({split[1]:,} training images, the same split for both)"
        lines.append(f"{where}, gender: Model A {acc['A']:.2%} ({gender['A']['name']}) against Model B {acc['B']:.2%} "
                     f"({gender['B']['name']}): the report's \"A is better on gender\" "
                     f"**{'holds' if acc['A'] > acc['B'] else 'does not hold'}**.")
        lines.append(f"{where}, age: Model B {mae['B']:.2f} years ({age['B']['name']}) against Model A "
                     f"{mae['A']:.2f} ({age['A']['name']}): the report's \"B is better on age\" "
                     f"**{'holds' if mae['B'] < mae['A'] else 'does not hold'}**.")
        faster = speed["A"][0] > speed["B"][0]
        latency = (f", {speed['A'][1]:.1f} against {speed['B'][1]:.1f} ms per face"
                   if speed["A"][1] is not None and speed["B"][1] is not None else "")
        lines.append(f"Speed: Model A trains at {speed['A'][0]:.0f} images/s against Model B's {speed['B'][0]:.0f}"
                     f"{latency}: \"A is faster\" **{'holds' if faster else 'does not hold'}**.")
    return lines


def _data_effect(runs: list[dict], summaries: dict) -> list[str]:
    """The same model on different amounts of data: what more images bought."""
    lines = []
    sizes = {run["name"]: run["config"]["train_images"] for run in runs}
    if len(set(sizes.values())) > 1:
        lines.append("The runs trained on different amounts of data ("
                     + ", ".join(f"{name}: {count:,} images" for name, count in sizes.items())
                     + "); only runs on the same split compare the models themselves.")
    for architecture, model in MODELS.items():
        same_model = sorted((run for run in runs if _architecture(run) == architecture),
                            key=lambda run: run["config"]["train_images"])
        if len(same_model) < 2 or same_model[0]["config"]["train_images"] == same_model[-1]["config"]["train_images"]:
            continue
        # the best run (validation gender accuracy) on the least and on the most data
        def best_with(images: int) -> dict:
            return max((run for run in same_model if run["config"]["train_images"] == images),
                       key=lambda run: summaries[run["name"]]["best_val_gender_accuracy"])

        small = best_with(same_model[0]["config"]["train_images"])
        large = best_with(same_model[-1]["config"]["train_images"])
        s, l = summaries[small["name"]], summaries[large["name"]]
        lines.append(f"{model} with {large['config']['train_images']:,} training images ({large['name']}) reaches "
                     f"{l['best_val_gender_accuracy']:.2%} and {l['lowest_val_age_mae']:.2f} years; with "
                     f"{small['config']['train_images']:,} ({small['name']}) {s['best_val_gender_accuracy']:.2%} and "
                     f"{s['lowest_val_age_mae']:.2f}: a comparison of {model} on the larger set with another model on "
                     f"the smaller one credits the model with "
                     f"{100 * (l['best_val_gender_accuracy'] - s['best_val_gender_accuracy']):+.2f} points of gender "
                     f"accuracy and {l['lowest_val_age_mae'] - s['lowest_val_age_mae']:+.2f} years of MAE that came "
                     f"from the data.")
    return lines


def compare(run_folders: list[Path], out: Path) -> Path:
    if not run_folders:
        raise ValueError("name at least one run folder to compare")
    out = output_file(out, "compare.md")
    runs = [load_run(folder) for folder in run_folders]
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = plot_curves(runs, out.with_name(out.stem + "_curves.png"))
    text = ["# Comparison of runs", "",
            "Validation figures of each run's best checkpoint (lowest validation loss); learning curves per epoch.",
            "", comparison_table(runs), ""]
    ablation = ablation_table(runs)
    if ablation:
        text += ["## One change at a time", "",
                 "Each run against the nearest run given before it of the same model and protocol (fewest "
                 "settings changed), over the epochs both ran; a run started from another's checkpoint "
                 "(`--init-from`) against all of that run.", "",
                 *ablation, ""]
    seeds = seed_table(runs)
    if seeds:
        text += ["## Reseeding", "",
                 "Runs that differ only in `training_seed` (initialisation, augmentation, shuffling; same split and "
                 "starting checkpoint and as many epochs): their spread is how far chance alone moves a figure. "
                 "Each other run from the same starting checkpoint is read against it: inside the seeds' range its "
                 "change is not shown to matter; beyond it, with as few seeds as these, is a hint, not proof.", "",
                 *seeds, ""]
    text += ["## What the numbers say", "", *[f"- {line}" for line in conclusions(runs)], "",
             f"![learning curves]({figure.name})", ""]
    out.write_text("\n".join(text))
    return out
