import numpy as np
import pandas as pd
import pytest

from agegender import data
from agegender.errors import DataError, DataWarning


@pytest.mark.parametrize("name, expected", [
    ("25_0_1_20170116174525125.jpg.chip.jpg", (25, 0, 1)),
    ("100_1_4_20170112213001988.jpg.chip.jpg", (100, 1, 4)),
    ("39_1_20170116174525125.jpg.chip.jpg", (39, 1, None)),      # race field missing
    ("24_0_1_20170116220224657 .jpg.chip.jpg", (24, 0, 1)),     # stray space
    ("55_0_0_20170116232725357jpg.chip.jpg", (55, 0, 0)),       # missing dot
    ("/some/dir/7_1_2_2017.jpg", (7, 1, 2)),
])
def test_parses_utkface_names_including_malformed_ones(name, expected):
    assert data.parse_utkface_name(name) == expected


@pytest.mark.parametrize("name", ["holiday.jpg", "25_2_1_2017.jpg", "x_0_1_2017.jpg", "25.jpg"])
def test_unreadable_names_give_none(name):
    assert data.parse_utkface_name(name) is None


def test_folder_reader_skips_unlabelled_files_with_one_warning(utk_folder, tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for source in sorted(utk_folder.iterdir())[:5]:
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "holiday.jpg").write_bytes(source.read_bytes())
    with pytest.warns(DataWarning, match="1 file names carry no UTKFace"):
        frame = data.read_dataset(folder)
    assert len(frame) == 5
    assert list(frame.columns) == data.COLUMNS
    assert frame["group"].nunique() == 5  # hashed groups when the data has none


def test_byte_identical_copies_share_a_hashed_group(utk_folder, tmp_path):
    source = sorted(utk_folder.iterdir())[0]
    (tmp_path / "a.jpg").write_bytes(source.read_bytes())
    (tmp_path / "b.jpg").write_bytes(source.read_bytes())
    groups = data.file_hash_groups(pd.Series([str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]))
    assert groups[0] == groups[1]


def test_csv_reader_skips_malformed_rows_and_resolves_images_folder(tmp_path, utk_folder):
    (tmp_path / "images").mkdir()
    names = sorted(p.name for p in utk_folder.iterdir())[:3]
    for name in names:
        (tmp_path / "images" / name).write_bytes((utk_folder / name).read_bytes())
    csv = tmp_path / "labels.csv"
    csv.write_text("file,age,gender\n"
                   f"{names[0]},30,1\n{names[1]},abc,0\n{names[2]},40,7\n")
    with pytest.warns(DataWarning, match="2 rows .* malformed age or gender .* line 3"):
        frame = data.read_dataset(tmp_path)
    assert frame["path"].tolist() == [str(tmp_path / "images" / names[0])]
    assert frame[["age", "gender"]].values.tolist() == [[30, 1]]


@pytest.mark.parametrize("content, message", [
    ("path,age\nx.jpg,3\n", "lacks the column"),
    ("path,age,gender\nx.jpg,old,male\n", "no row has a valid age"),
    ("", "not a readable CSV"),
])
def test_bad_csv_files_give_clear_errors(tmp_path, content, message):
    csv = tmp_path / "labels.csv"
    csv.write_text(content)
    with pytest.raises(DataError, match=message):
        data.read_dataset(csv)


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.read_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no images found"):
        data.read_dataset(tmp_path)


def _frame(groups: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 1, 1, 2, 3], groups)
    group = np.repeat([f"g{i}" for i in range(groups)], sizes)
    return pd.DataFrame({"path": [f"{i}.jpg" for i in range(len(group))], "age": 30, "gender": 0,
                         "race": 0, "group": group})


def test_split_never_puts_a_group_on_both_sides_and_is_seeded():
    frame = _frame(3000)
    split = data.group_split(frame, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=3)
    assert (frame.assign(split=split).groupby("group")["split"].nunique() == 1).all()
    shares = split.value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.01) and shares["test"] == pytest.approx(0.15, abs=0.01)
    assert split.equals(data.group_split(frame, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=3))
    assert not split.equals(data.group_split(frame, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=4))


def test_5k_protocol_is_a_4000_1000_group_aware_subset():
    frame = _frame(6000)
    chosen = data.protocol_split(frame, "5k", seed=1)
    counts = chosen["split"].value_counts()
    assert 4990 <= len(chosen) <= 5000
    assert counts["train"] == pytest.approx(4000, abs=5) and counts["val"] == pytest.approx(1000, abs=5)
    whole_groups = frame[frame["group"].isin(chosen["group"])]
    assert len(whole_groups) == len(chosen)
    with pytest.raises(DataError, match="unknown protocol"):
        data.protocol_split(frame, "10k", seed=1)


def test_holdout_protocol_keeps_full_train_and_cuts_its_val_in_two():
    frame = _frame(3000)
    full = data.protocol_split(frame, "full", seed=5)
    holdout = data.protocol_split(frame, "holdout", seed=5)
    assert (holdout["split"] == "train").equals(full["split"] == "train")
    shares = holdout["split"].value_counts(normalize=True)
    assert shares["val"] == pytest.approx(0.1, abs=0.01) and shares["test"] == pytest.approx(0.1, abs=0.01)
    assert (holdout.groupby("group")["split"].nunique() == 1).all()


def test_a_training_share_keeps_whole_groups_nests_and_leaves_validation_and_test_alone():
    holdout = data.protocol_split(_frame(3000), "holdout", seed=5)
    half, three_quarters = (data.keep_training_share(holdout, share, seed=5) for share in (0.5, 0.75))
    train = (holdout["split"] == "train").sum()
    assert (half["split"] == "train").sum() == pytest.approx(train / 2, abs=5)
    assert (three_quarters["split"] == "train").sum() == pytest.approx(0.75 * train, abs=5)
    assert set(half.index[half["split"] == "train"]) < set(three_quarters.index[three_quarters["split"] == "train"])
    assert (half["split"] == "unused").sum() == train - (half["split"] == "train").sum()
    for part in ("val", "test"):
        assert (half["split"] == part).equals(holdout["split"] == part)
    assert (half.groupby("group")["split"].nunique() == 1).all()


def test_saved_split_loads_back_identically(tmp_path):
    frame = data.protocol_split(_frame(200), "full", seed=0)
    data.save_split(frame, tmp_path / "split.csv")
    loaded = data.load_split(tmp_path / "split.csv")
    assert loaded[["path", "group", "split"]].equals(frame[["path", "group", "split"]].reset_index(drop=True))


def test_age_brackets():
    assert [data.age_bracket(a) for a in (0, 9, 10, 39, 40, 60, 116)] == ["0-9", "0-9", "10-19", "20-39",
                                                                          "40-59", "60+", "60+"]
