"""Data validation at the door: the prepare step (``lambda/prepare/handler.plan_run``) and preprocessing
(``training_src/preprocess.py``) reject bad raw data with file, row and column in the message, and
write nothing. The tolerable-gap policy (docs/architecture.md "Missing values", ``training_src/features/checks.py``): an
isolated gap of at most ``MAX_GAP`` readings in a setting or sensor is filled; longer gaps are errors.

Each case corrupts a small real dataset (the first 6 FD001 training units) in one way. ``PREPARE`` is
what the prepare gate says (None: it passes, because it only samples the file and cannot see the
problem, e.g. an asset's reading count); ``PREPROCESS`` is what preprocessing says (it reads it all).
"""

from __future__ import annotations

import contextlib
import gzip
import io
from pathlib import Path

import pytest

from predmaint.modules import load_module
from training_src import features, preprocess

REPO = Path(__file__).resolve().parents[2]
TRAIN = "cmapss/train_FD001.txt"


prepare = load_module(REPO / "lambda/prepare/handler.py", "reliability_prepare_handler")


@pytest.fixture(scope="module")
def fd001_small(data_dir: Path) -> dict[str, list[str]]:
    """Lines of the first 6 units of FD001 train and test, and their 6 true RULs."""
    def lines(name: str) -> list[str]:
        with gzip.open(data_dir / "cmapss" / name, "rt") as f:
            return [ln for ln in f.read().splitlines() if ln.strip()]

    return {"train": [ln for ln in lines("train_FD001.txt.gz") if int(ln.split()[0]) <= 6],
            "test": [ln for ln in lines("test_FD001.txt.gz") if int(ln.split()[0]) <= 6],
            "rul": lines("RUL_FD001.txt.gz")[:6]}


def _set(rows: list[str], row: int, col: int, value: str) -> list[str]:
    """``rows`` with the 0-based column ``col`` of the 1-based ``row`` replaced by ``value``."""
    out = list(rows)
    parts = out[row - 1].split()
    parts[col] = value
    out[row - 1] = " ".join(parts)
    return out


def _gap(rows: list[str], first: int, n: int, col: int = 6) -> list[str]:
    for r in range(first, first + n):
        rows = _set(rows, r, col, "nan")
    return rows


# name -> (corrupt(train lines) -> lines, prepare message fragment or None, preprocess message fragment)
CASES = {
    "one row missing a column": (lambda t: [ln if i != 2 else " ".join(ln.split()[:-1]) for i, ln in enumerate(t)],
                                 f"{TRAIN} row 3: expected 26 values, found 25", "row 3: expected 26 values, found 25"),
    "every row missing a column": (lambda t: [" ".join(ln.split()[:-1]) for ln in t],
                                   f"{TRAIN} row 1: expected 26 values, found 25", "expected 26 columns"),
    "extra column": (lambda t: [ln + " 1.0" for ln in t], f"{TRAIN} row 1: expected 26 values, found 27",
                     "expected 26 columns"),
    "non-numeric value": (lambda t: _set(t, 4, 6, "abc"), f"{TRAIN} row 4 column 'sensor_2': non-numeric value 'abc'",
                          "row 4, column 'sensor_2': not a number: 'abc'"),
    "inf in a sensor": (lambda t: _set(t, 4, 7, "inf"), f"{TRAIN} row 4 column 'sensor_3'",
                        "row 4, column 'sensor_3': infinite value"),
    "NaN in the time column": (lambda t: _set(t, 5, 1, "nan"), f"{TRAIN} row 5 column 'cycle'",
                               "row 5, column 'cycle': missing value"),
    "NaN in the id column": (lambda t: _set(t, 5, 0, "NaN"), f"{TRAIN} row 5 column 'unit'",
                             "row 5, column 'unit': missing value"),
    "duplicate cycle": (lambda t: _set(t, 6, 1, t[4].split()[1]), f"{TRAIN} row 6 column 'cycle': duplicate cycle 5",
                        "row 6: duplicate cycle 5 for asset '1'"),
    "non-increasing cycles": (lambda t: [*t[:4], t[5], t[4], *t[6:]],
                              f"{TRAIN} row 6 column 'cycle': non-increasing cycle 5",
                              "row 6: cycle 5 does not increase for asset '1'"),
    "asset with a single reading": (lambda t: [*t, "99 1 " + " ".join(t[0].split()[2:])], None,
                                    "asset '99' has 1 reading(s); the profile needs at least 2"),
    "empty file": (lambda t: [], f"{TRAIN}: empty object", "file is empty"),
    "blank lines only": (lambda t: ["", "   ", ""], f"{TRAIN}: no data rows", "file is empty"),
    "wrong delimiter (commas)": (lambda t: [",".join(ln.split()) for ln in t],
                                 f"{TRAIN} row 1: expected 26 values, found 1", "found 1 (wrong delimiter?)"),
    "profile does not match the data": (lambda t: ["UDI,Product ID,Type,Air temperature [K]", "1,M14860,M,298.1"],
                                        f"{TRAIN} row 1: expected 26 values, found 4", "expected 26 columns"),
    "gap longer than the policy allows": (lambda t: _gap(t, 10, features.MAX_GAP + 1), None,
                                          f"row {10 + features.MAX_GAP}, column 'sensor_2': gap of more than "
                                          f"{features.MAX_GAP} consecutive missing readings"),
    "sensor missing for a whole asset": (lambda t: _gap(t, 1, sum(ln.split()[0] == "1" for ln in t)), None,
                                         "column 'sensor_2' is missing for every reading of asset"),
}


def _write(root: Path, small: dict[str, list[str]], train: list[str]) -> Path:
    data = root / "data"
    (data / "cmapss").mkdir(parents=True)
    (data / TRAIN).write_text("\n".join(train) + ("\n" if train else ""))
    (data / "cmapss/test_FD001.txt").write_text("\n".join(small["test"]) + "\n")
    (data / "cmapss/RUL_FD001.txt").write_text("\n".join(small["rul"]) + "\n")
    return data


def _prepare(data: Path) -> str | None:
    try:
        prepare.plan_run({"dataset": "cmapss", "profile": "cmapss", "subset": "FD001"}, prepare.LocalStore(data))
    except prepare.InputError as exc:
        return str(exc)
    return None


def _preprocess(data: Path, out: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = preprocess.main(["--profile", "cmapss", "--subset", "FD001", "--data-dir", str(data),
                                "--output-dir", str(out)])
    return code, err.getvalue()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_raw_data_is_rejected_at_the_door_naming_where(case: str, fd001_small, tmp_path: Path) -> None:
    corrupt, at_prepare, at_preprocess = CASES[case]
    data = _write(tmp_path, fd001_small, corrupt(fd001_small["train"]))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    message = _prepare(data)
    if at_prepare is None:
        assert message is None, message
    else:
        assert message is not None and at_prepare in message, message
    out = tmp_path / "out"
    code, err = _preprocess(data, out)
    assert code == 2, err
    assert at_preprocess in err and "train_FD001.txt" in err, err
    assert len(err.strip().splitlines()) == 1, "one clear line, no traceback"
    assert not out.exists() or not any(out.iterdir()), "preprocess wrote something on bad input"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "out" not in p.parts) == before


@pytest.mark.parametrize("gap", list(range(1, features.MAX_GAP + 1)))
def test_isolated_gaps_up_to_the_policy_are_filled(gap: int, fd001_small, tmp_path: Path) -> None:
    train = _gap(fd001_small["train"], 10, gap)
    data = _write(tmp_path, fd001_small, train)
    assert _prepare(data) is None
    code, err = _preprocess(data, tmp_path / "out")
    assert code == 0, err
    # the filled value is the asset's previous reading (validate_readings is what preprocess applies)
    import pandas as pd

    from training_src.profiles import load_profile

    profile = load_profile("cmapss", "FD001")
    df = pd.read_csv(io.StringIO("\n".join(train)), sep=r"\s+", header=None, names=list(profile.columns))
    clean = features.validate_readings(df, profile, "train")
    assert clean["sensor_2"].notna().all()
    assert (clean["sensor_2"].iloc[9:9 + gap] == df["sensor_2"].iloc[8]).all()


def test_gap_at_the_start_of_a_history_takes_the_next_reading(fd001_small) -> None:
    import pandas as pd

    from training_src.profiles import load_profile

    profile = load_profile("cmapss", "FD001")
    df = pd.read_csv(io.StringIO("\n".join(_gap(fd001_small["train"], 1, 2))), sep=r"\s+", header=None,
                     names=list(profile.columns))
    clean = features.validate_readings(df, profile, "train")
    assert (clean["sensor_2"].iloc[:2] == df["sensor_2"].iloc[2]).all()


def test_the_good_dataset_passes_both_gates(fd001_small, tmp_path: Path) -> None:
    data = _write(tmp_path, fd001_small, fd001_small["train"])
    assert _prepare(data) is None
    code, err = _preprocess(data, tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "manifest.json").is_file()


@pytest.mark.parametrize("name", ["train_FD002.txt.gz", "test_FD002.txt.gz"])
def test_numeric_fast_read_equals_the_text_path_bit_for_bit(name: str, data_dir: Path, monkeypatch) -> None:
    """read_table reads a clean header-less whitespace file straight as float64; the values must be
    exactly those of the text path (text, then pd.to_numeric), which validates cell by cell."""
    import numpy as np

    from training_src import dataio
    from training_src.profiles import load_profile

    profile = load_profile("cmapss", "FD002")
    path = data_dir / "cmapss" / name
    fast = dataio.read_table(path, profile, allow_label=False)
    monkeypatch.setattr(dataio, "_read_numeric", lambda *args: None)
    text = dataio.read_table(path, profile, allow_label=False)
    assert list(fast.columns) == list(text.columns) and fast.shape == text.shape
    for c in fast.columns:
        assert fast[c].dtype == text[c].dtype == np.float64
        assert (fast[c].to_numpy().view(np.int64) == text[c].to_numpy().view(np.int64)).all(), c
