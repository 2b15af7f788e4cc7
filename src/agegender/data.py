"""Read face datasets (UTKFace folders, CSV files), label parsing, duplicate groups and seeded splits.

Data flows one way: files -> `Dataset` (a pandas frame of path, age, gender, race, group) -> splits.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, DataWarning
from .images import image_files
from .recipes import PROTOCOLS

RACES = ("White", "Black", "Asian", "Indian", "Others")
GENDERS = ("male", "female")  # UTKFace: 0 = male, 1 = female
AGE_BRACKETS = ((0, 9), (10, 19), (20, 39), (40, 59), (60, 200))
COLUMNS = ["path", "age", "gender", "race", "group"]

# `{age}_{gender}_{race}_{datetime}.jpg.chip.jpg`; tolerate a missing race field, stray spaces, a missing dot.
_UTK_NAME = re.compile(r"^\s*(?P<age>\d{1,3})\s*_\s*(?P<gender>[01])\s*(?:_\s*(?P<race>[0-4])\s*)?_\s*\d")


def parse_utkface_name(name: str) -> tuple[int, int, int | None] | None:
    """(age, gender, race) from a UTKFace file name, race None when absent; None when unreadable."""
    match = _UTK_NAME.match(Path(name).name)
    if not match:
        return None
    race = match["race"]
    return int(match["age"]), int(match["gender"]), (int(race) if race is not None else None)


def age_bracket(age: float) -> str:
    for low, high in AGE_BRACKETS:
        if low <= age <= high:
            return f"{low}+" if high >= 200 else f"{low}-{high}"
    return "unknown"


def file_hash_groups(paths: pd.Series) -> pd.Series:
    """A group id per file from a hash of its bytes, so byte-identical copies share a group."""
    def digest(path: str) -> str:
        try:
            return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]
        except OSError:
            return "unreadable-" + hashlib.sha1(path.encode()).hexdigest()[:12]
    return paths.map(digest)


def _finish(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    if frame.empty:
        raise DataError(f"no labelled face images found in {source}")
    if "race" not in frame:
        frame["race"] = np.nan
    if "group" not in frame or frame["group"].isna().any():
        hashed = file_hash_groups(frame["path"])
        frame["group"] = frame["group"].fillna(hashed) if "group" in frame else hashed
    frame = frame[COLUMNS].copy()
    frame["age"] = frame["age"].astype(int)
    frame["gender"] = frame["gender"].astype(int)
    frame["race"] = pd.to_numeric(frame["race"], errors="coerce").astype("Int64")
    frame["group"] = frame["group"].astype(str)
    return frame.reset_index(drop=True)


def read_utkface_folder(folder: Path) -> pd.DataFrame:
    """Label every image below `folder` from its UTKFace file name; names that cannot be read are reported."""
    files = image_files(folder)
    if not files:
        raise DataError(f"no images found in {folder} (expected UTKFace files like 25_0_1_2017....jpg.chip.jpg, "
                        "or a labels.csv)")
    rows, unreadable = [], []
    for path in files:
        labels = parse_utkface_name(path.name)
        if labels is None:
            unreadable.append(path.name)
        else:
            rows.append((str(path), *labels))
    if unreadable:
        warnings.warn(f"{len(unreadable)} file names carry no UTKFace age_gender labels and were skipped "
                      f"(e.g. {unreadable[0]!r})", DataWarning, stacklevel=2)
    return _finish(pd.DataFrame(rows, columns=["path", "age", "gender", "race"]), folder)


def _read_csv(path: Path, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable CSV: {error}".splitlines()[0]) from None


def read_labels_csv(csv_path: Path) -> pd.DataFrame:
    """A CSV with `path` (or `file`), `age`, `gender` and optional `race`, `group` columns.

    Relative paths are resolved against the CSV's folder, then its `images/` subfolder.
    """
    frame = _read_csv(csv_path)
    if "path" not in frame and "file" in frame:
        frame = frame.rename(columns={"file": "path"})
    missing = {"path", "age", "gender"} - set(frame.columns)
    if missing:
        raise DataError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; "
                        "expected path,age,gender[,race,group]")
    age = pd.to_numeric(frame["age"], errors="coerce")
    gender = pd.to_numeric(frame["gender"], errors="coerce")
    bad = age.isna() | gender.isna() | (age < 0) | (age > 130) | ~gender.isin([0, 1])
    if bad.all():
        raise DataError(f"{csv_path}: no row has a valid age (0-130) and gender (0 or 1)")
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # +1 header, +1 one-based
        warnings.warn(f"{int(bad.sum())} rows of {csv_path} have a malformed age or gender and were skipped "
                      f"(first at line {first})", DataWarning, stacklevel=2)
    frame = frame[~bad].assign(age=age[~bad], gender=gender[~bad])
    root = csv_path.parent

    def resolve(value: str) -> str:
        path = Path(value)
        if path.is_absolute():
            return str(path)
        direct = root / path
        return str(direct if direct.exists() or not (root / "images" / path).exists() else root / "images" / path)
    frame["path"] = frame["path"].astype(str).map(resolve)
    return _finish(frame, csv_path)


def read_dataset(source: str | Path) -> pd.DataFrame:
    """A labelled dataset from a CSV file, a folder with `labels.csv`, or a folder of UTKFace-named images."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"data path {source} does not exist")
    if source.is_file():
        return read_labels_csv(source)
    if (source / "labels.csv").is_file():
        return read_labels_csv(source / "labels.csv")
    return read_utkface_folder(source)


def group_split(frame: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.Series:
    """Assign each row a split name; every duplicate group lands whole on one side.

    Groups are shuffled with `seed` and filled in order until each split holds its share of images.
    """
    groups = frame["group"].drop_duplicates().sample(frac=1.0, random_state=seed).to_list()
    sizes = frame.groupby("group").size()
    targets = np.cumsum([fractions[name] for name in fractions]) * len(frame)
    names = list(fractions)
    assignment, filled, index = {}, 0, 0
    for group in groups:
        while index < len(names) - 1 and filled >= targets[index] - 1e-9:
            index += 1
        assignment[group] = names[index]
        filled += int(sizes[group])
    return frame["group"].map(assignment).rename("split")


def subset_by_groups(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """A fixed random subset of about `size` images, taken whole groups at a time."""
    if size >= len(frame):
        return frame
    order = frame["group"].drop_duplicates().sample(frac=1.0, random_state=seed)
    counts = frame.groupby("group").size()[order].cumsum()
    keep = set(counts[counts <= size].index)
    return frame[frame["group"].isin(keep)]


def fold_validation_into_training(split: pd.DataFrame) -> pd.DataFrame:
    """The split with its validation part marked as training (a refit's); a test part stays as it is."""
    return split.assign(split=split["split"].replace("val", "train"))


def keep_training_share(split: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """The split with only `fraction` of its training part kept (whole groups, a fixed random order, so a smaller
    share is inside a larger one); the rest is marked "unused". Validation and test parts are untouched."""
    train = split[split["split"] == "train"]
    kept = subset_by_groups(train, round(fraction * len(train)), seed)
    unused = train.index.difference(kept.index)
    return split.assign(split=split["split"].mask(split.index.isin(unused), "unused"))


def protocol_split(frame: pd.DataFrame, protocol: str, seed: int) -> pd.DataFrame:
    """The rows used by a protocol with a `split` column (train/val, and test for holdout).

    full: 80:20 of every image. 5k: a fixed 5,000-image subset split 4,000/1,000. holdout: 80:10:10
    train/val/test, where train is exactly full's train part and full's val part is cut in two by group,
    so that a model trained on protocol full has never seen a test image.
    """
    if protocol == "5k":
        chosen = subset_by_groups(frame, 5000, seed)
    elif protocol in ("full", "holdout"):
        chosen = frame
    else:
        raise DataError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    split = group_split(chosen, {"train": 0.8, "val": 0.2}, seed)
    if protocol == "holdout":
        held = chosen[split == "val"]
        split.loc[held.index] = group_split(held, {"val": 0.5, "test": 0.5}, seed + 1)
    return chosen.assign(split=split)


def save_split(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def load_split(path: Path) -> pd.DataFrame:
    """A split.csv as save_split wrote it (a run's, or one of the same columns); anything else is refused."""
    frame = _read_csv(path, dtype={"group": str})
    missing = [column for column in [*COLUMNS, "split"] if column not in frame]
    if missing:
        raise DataError(f"{path} is not a split file: it lacks the column(s) {', '.join(missing)} "
                        f"(expected a run's split.csv: {','.join(COLUMNS)},split)")
    frame["race"] = pd.to_numeric(frame["race"], errors="coerce").astype("Int64")
    return frame
