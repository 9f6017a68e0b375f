"""Fleet scoring's fast paths change no value: the numeric reader and the per-core split."""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np
import pandas as pd
import pytest

from predmaint import scoring
from training_src import dataio
from training_src.dataio import read_table, resolve_file


@pytest.fixture(scope="module")
def loaded(fd001_perf):
    return scoring.load_model(fd001_perf["model_dir"])


@pytest.fixture(scope="module")
def profile(fd001_perf):
    return fd001_perf["profile"]


@pytest.fixture(scope="module")
def raw_test(data_dir, profile):
    return read_table(resolve_file(data_dir, profile.file("test")), profile, allow_label=False)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and (a.dtypes == b.dtypes).all()
    for c in b.columns:  # bit for bit
        np.testing.assert_array_equal(a[c].to_numpy().view(np.int64), b[c].to_numpy().view(np.int64))


def test_numeric_reader_equals_read_table(data_dir, profile, raw_test, tmp_path) -> None:
    rng = np.random.default_rng(0)
    noisy = raw_test.copy()
    noisy["sensor_2"] += rng.standard_normal(len(noisy)) * 1e-3  # many digits: parsing must agree exactly
    text = noisy.to_csv(sep=" ", header=False, index=False, float_format="%.17g")
    with gzip.open(tmp_path / "fleet.txt.gz", "wt") as fh:
        fh.write(text)
    fast = scoring.read_fleet(tmp_path / "fleet.txt.gz", profile)
    assert scoring._read_numeric(tmp_path / "fleet.txt.gz", profile) is not None  # the fast path was taken
    _same(fast, read_table(tmp_path / "fleet.txt.gz", profile, allow_label=False))
    noisy.to_csv(tmp_path / "fleet.csv", index=False, float_format="%.17g")
    csv_profile = dataclasses.replace(profile, file_format="csv", header=True)
    assert scoring._read_numeric(tmp_path / "fleet.csv", csv_profile) is not None
    _same(scoring.read_fleet(tmp_path / "fleet.csv", profile), read_table(tmp_path / "fleet.csv", csv_profile,
                                                                          allow_label=False))
    # the shipped test file as it is (plain or .gz)
    path = resolve_file(data_dir, profile.file("test"))
    _same(scoring.read_fleet(path, profile), raw_test)


@pytest.mark.parametrize("edit,message", [
    (lambda lines: lines.__setitem__(3, lines[3].replace(lines[3].split()[5], "abc", 1)), "row 4, column"),
    (lambda lines: lines.__setitem__(7, " ".join(lines[7].split()[:-1])), "row 8: expected 26 values"),
    (lambda lines: lines.__setitem__(2, lines[2] + " 1.0"), ""),
])
def test_anything_unusual_gets_read_tables_message(profile, raw_test, tmp_path, edit, message) -> None:
    lines = raw_test.head(50).to_csv(sep=" ", header=False, index=False).splitlines()
    edit(lines)
    (tmp_path / "bad.txt").write_text("\n".join(lines) + "\n")
    assert scoring._read_numeric(tmp_path / "bad.txt", profile) is None
    with pytest.raises(dataio.DataError) as want:
        read_table(tmp_path / "bad.txt", profile, allow_label=False)
    with pytest.raises(dataio.DataError) as got:
        scoring.read_fleet(tmp_path / "bad.txt", profile)
    assert str(got.value) == str(want.value) and message in str(got.value)


def test_gaps_fall_back_to_read_table(profile, raw_test, tmp_path) -> None:
    df = raw_test.head(60).copy()
    df.to_csv(tmp_path / "gappy.csv", index=False)
    text = (tmp_path / "gappy.csv").read_text().splitlines()
    cells = text[5].split(",")
    cells[7] = ""  # an empty cell is a gap read_table accepts (validation fills or refuses it later)
    text[5] = ",".join(cells)
    (tmp_path / "gappy.csv").write_text("\n".join(text) + "\n")
    csv_profile = dataclasses.replace(profile, file_format="csv", header=True)
    assert scoring._read_numeric(tmp_path / "gappy.csv", csv_profile) is None
    got = scoring.read_fleet(tmp_path / "gappy.csv", profile)
    assert np.isnan(got.iloc[4, 7])


def test_split_across_threads_changes_nothing(loaded, raw_test) -> None:
    module, model = loaded
    fleet = pd.concat([raw_test.assign(unit=raw_test["unit"] + 1000 * k) for k in range(6)], ignore_index=True)
    one = scoring.score_frame(fleet, module, model, chunk=16, workers=1)
    for workers in (2, 3, 64):
        ids, preds = scoring.score_frame(fleet, module, model, chunk=16, workers=workers)
        assert ids == one[0]
        np.testing.assert_array_equal(preds, one[1])
    assert one[0][:3] == [1, 2, 3] and all(isinstance(i, int) for i in one[0])


def test_interleaved_and_string_ids(loaded, raw_test) -> None:
    module, model = loaded
    base_ids, base = scoring.score_frame(raw_test, module, model)
    by_id = dict(zip(base_ids, base, strict=True))
    inter = raw_test.sample(frac=1, random_state=0).sort_values("cycle", kind="stable").reset_index(drop=True)
    ids, preds = scoring.score_frame(inter, module, model)
    assert dict(zip(ids, preds, strict=True)) == by_id
    named = raw_test.assign(unit="engine-" + raw_test["unit"].astype(int).astype(str))
    ids, preds = scoring.score_frame(named, module, model)
    assert ids[0] == "engine-1" and np.array_equal(preds, base)


@pytest.mark.parametrize("name", ["fleet.txt", "fleet.txt.gz", "fleet.csv", "fleet.csv.gz"])
def test_block_boundaries_change_nothing(profile, raw_test, tmp_path, name) -> None:
    """Parsed in many small blocks (cut at line ends while decompressing), with a byte-order mark."""
    csv = ".csv" in name
    text = raw_test.to_csv(sep="," if csv else " ", header=csv, index=False, float_format="%.9g")
    data = b"\xef\xbb\xbf" + text.encode()
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    prof = dataclasses.replace(profile, file_format="csv", header=True) if csv else profile
    want = read_table(tmp_path / name, prof, allow_label=False)
    for block in (997, 4096, 1 << 22):
        got = scoring._read_numeric(tmp_path / name, prof, block=block)
        assert got is not None
        _same(got, want)
