"""Checks on the real development set in ../shared; skipped where it is absent (a user's machine)."""
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from agegender import data
from agegender.errors import DataWarning
from conftest import UTKFACE

pytestmark = pytest.mark.skipif(not (UTKFACE / "labels.csv").is_file(), reason="../shared/datasets/utkface is absent")
RUNS = Path(__file__).resolve().parents[1] / "runs"


@pytest.fixture(scope="module")
def utkface():
    return data.read_dataset(UTKFACE)


def test_labels_csv_and_file_names_agree(utkface):
    assert len(utkface) == 18_983
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # every malformed name is still parsed
        named = data.read_dataset(UTKFACE / "images")
    assert len(named) == 18_983
    merged = utkface.merge(named, on="path", suffixes=("", "_name"))
    assert (merged["age"] == merged["age_name"]).all() and (merged["gender"] == merged["gender_name"]).all()
    assert utkface["race"].isna().sum() == 3


@pytest.mark.parametrize("protocol, train, val", [("full", 15_186, 3_797), ("5k", 4_000, 1_000)])
def test_protocol_splits_keep_groups_whole(utkface, protocol, train, val):
    split = data.protocol_split(utkface, protocol, seed=1337)
    counts = split["split"].value_counts()
    assert counts["train"] == pytest.approx(train, abs=10) and counts["val"] == pytest.approx(val, abs=10)
    assert (split.groupby("group")["split"].nunique() == 1).all()


@pytest.mark.parametrize("run", ["seed-a", "holdout-xception-balanced", "holdout-xception-full-finetune",
                                 "holdout-xception-stage2", "holdout-xception-trimmed-2",
                                 "holdout-xception-trimmed-2-stage2", "holdout-dlib-resnet-probe",
                                 "holdout-dlib-resnet-lpft", "holdout-dlib-resnet-trimmed",
                                 "holdout-dlib-resnet-trimmed-rotation-10", "holdout-dlib-resnet-trimmed-rotation-10-168px",
                                 "holdout-xception-trimmed-from-imagenet",
                                 "holdout-xception-trimmed-from-imagenet-stage2"])
def test_holdout_test_split_was_never_trained_on_by_a_shipped_run(utkface, run):
    """The shipped models' runs (now and before) and the one-session pair's: none of their training images are in
    holdout's test split."""
    saved = RUNS / run / "split.csv"
    if not saved.is_file():
        pytest.skip(f"runs/{run} is not committed")
    trained_on = set(pd.read_csv(saved).query("split == 'train'")["path"].map(lambda p: Path(p).name))
    holdout = data.protocol_split(utkface, "holdout", seed=1337)
    test = set(holdout.loc[holdout["split"] == "test", "path"].map(lambda p: Path(p).name))
    assert len(test) == pytest.approx(1_898, abs=20) and not trained_on & test


@pytest.mark.parametrize("run", ["seed-a", "seed-a-5k", "seed-b", "xception", "holdout-xception-full-finetune"])
def test_committed_runs_splits_are_reproducible(utkface, run):
    saved = RUNS / run / "split.csv"
    if not saved.is_file():
        pytest.skip(f"runs/{run} is not committed")
    protocol = json.loads((RUNS / run / "config.json").read_text())["recipe"]["protocol"]
    again = data.protocol_split(utkface, protocol, seed=1337)
    committed = pd.read_csv(saved)
    assert [Path(p).name for p in committed["path"]] == [Path(p).name for p in again["path"]]
    assert committed["split"].tolist() == again["split"].tolist()
