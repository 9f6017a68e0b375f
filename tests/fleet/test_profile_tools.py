"""`predmaint profile init` and `profile check`: drafts of the real datasets and of other layouts, and
checks that name the file, row and column (the validators a run applies, on every row)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from fleetkit import HEADER, fleet_rows

from predmaint.cli import main
from training_src.profiles import load_profile, parse_profile


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_the_ai4i_draft_finds_what_the_shipped_profile_says(capsys, data_dir) -> None:
    code, out, err = run_cli(capsys, "profile", "init", str(data_dir / "ai4i2020" / "ai4i2020.csv.gz"),
                             "--data-dir", str(data_dir))
    assert code == 0, err
    doc = json.loads(out)
    shipped = load_profile("ai4i2020")
    draft = parse_profile(doc, source="draft")
    assert draft.task == shipped.task and draft.label == shipped.label
    assert draft.sensor_columns == shipped.sensor_columns and draft.rename == shipped.rename
    assert set(draft.categorical_columns["type"]) == {"L", "M", "H"}
    assert set(draft.exclude_columns) == set(shipped.exclude_columns)  # ids and failure modes (leakage)
    assert doc["files"] == {"data": "ai4i2020/ai4i2020.csv"}
    assert "would leak the label" in err


def test_a_headerless_whitespace_fleet_is_drafted_with_positional_names(capsys, data_dir, tmp_path) -> None:
    code, out, err = run_cli(capsys, "profile", "init", str(data_dir / "cmapss" / "train_FD001.txt.gz"),
                             "--data-dir", str(data_dir), "--name", "turbofans")
    assert code == 0, err
    draft = parse_profile(json.loads(out), source="draft")
    assert (draft.name, draft.task, draft.file_format, draft.header) == ("turbofans", "rul_regression",
                                                                         "whitespace", False)
    assert (draft.id_column, draft.time_column) == ("column_1", "column_2") and len(draft.columns) == 26
    assert draft.files == {"train": "cmapss/train_FD001.txt"} and draft.windows.sizes == (0, 10, 30, 75)
    assert "column_1 (100 assets, 128-362 readings each)" in err
    # the draft checks out against the file it came from, as a run's validators see it
    (tmp_path / "turbofans.json").write_text(out)
    code, out, err = run_cli(capsys, "profile", "check", str(tmp_path / "turbofans.json"),
                             str(data_dir / "cmapss" / "train_FD001.txt.gz"))
    assert code == 0, err
    assert out.startswith(f"ok: {data_dir / 'cmapss' / 'train_FD001.txt.gz'} matches profile turbofans as its "
                          "train file: 20631 rows, 100 assets (128-362 readings each)")


def test_a_file_outside_the_data_dir_is_told_where_to_go(capsys, tmp_path) -> None:
    export = tmp_path / "exports" / "Pump History 2026.csv"
    export.parent.mkdir()
    export.write_text(",".join(HEADER) + "\n" + "\n".join(",".join(r) for r in fleet_rows(pumps=6)) + "\n")
    code, out, err = run_cli(capsys, "profile", "init", str(export), "--data-dir", str(tmp_path / "data"),
                             "--output", str(tmp_path / "pumps.json"))
    assert code == 0 and out == "", err
    doc = json.loads((tmp_path / "pumps.json").read_text())
    assert doc["name"] == "pump-history-2026" and doc["files"] == {"train": "pump-history-2026/Pump History 2026.csv"}
    assert f"copy {export} to {tmp_path / 'data' / 'pump-history-2026' / 'Pump History 2026.csv'}" in err
    code, _, err = run_cli(capsys, "profile", "init", str(export), "--output", str(tmp_path / "pumps.json"))
    assert code == 2 and one_line(err).endswith(f"{tmp_path / 'pumps.json'} exists; pass --force to replace it")


@pytest.mark.parametrize("content, fragment", [
    ("", "the file is empty"),
    ("a,b,c\nx,y,z\nq,r,s\n", "cannot tell what to predict"),
    ("temp,pressure\n1.0,2.0\n1.5,2.5\n", "cannot tell what to predict"),
])
def test_a_file_that_says_nothing_to_predict_is_refused(capsys, tmp_path, content, fragment) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text(content)
    code, out, err = run_cli(capsys, "profile", "init", str(path))
    assert code == 2 and out == ""
    assert fragment in one_line(err) and str(path) in one_line(err)


@pytest.fixture
def pumps(tmp_path: Path, capsys) -> tuple[Path, Path]:
    """A small pump export under a data dir, and its drafted profile."""
    csv_path = tmp_path / "data" / "pumps" / "pumps.csv"
    csv_path.parent.mkdir(parents=True)
    csv_path.write_text(",".join(HEADER) + "\n" + "\n".join(",".join(r) for r in fleet_rows(pumps=8)) + "\n")
    code, _, err = run_cli(capsys, "profile", "init", str(csv_path), "--data-dir", str(tmp_path / "data"),
                           "--output", str(tmp_path / "pumps.json"))
    assert code == 0, err
    return tmp_path / "pumps.json", csv_path


def _edit(path: Path, row: int, column: int, value: str) -> None:
    lines = path.read_text().splitlines()
    cells = lines[row - 1].split(",")
    cells[column] = value
    lines[row - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("row, column, value, fragment", [
    (7, 6, "n/a", "row 7 column 'bearing_temp': non-numeric value 'n/a'"),  # the prepare Lambda's check
    (9, 4, "C", "row 9 column 'pump_model': unknown level 'C'; the profile allows ['A', 'B']"),
    (12, 1, "2", "row 12 column 'op_hours': non-increasing op_hours 2 for asset 101 (previous 20)"),
])
def test_check_names_file_row_and_column(capsys, pumps, row, column, value, fragment) -> None:
    profile, csv_path = pumps
    _edit(csv_path, row, column, value)
    code, out, err = run_cli(capsys, "profile", "check", str(profile), str(csv_path))
    assert code == 2 and out == ""
    assert one_line(err) == f"predmaint profile check: error: {csv_path} {fragment}"


def test_check_finds_what_only_preprocessing_sees(capsys, pumps) -> None:
    """Four missing readings in a row: the Lambda allows gaps, preprocessing refuses one this long."""
    profile, csv_path = pumps
    for row in (20, 21, 22, 23):
        _edit(csv_path, row, 5, "")
    code, _, err = run_cli(capsys, "profile", "check", str(profile), str(csv_path))
    assert code == 2
    assert one_line(err) == (f"predmaint profile check: error: {csv_path}: row 23, column 'vibration': gap of "
                             "more than 3 consecutive missing readings")


def test_check_a_profile_alone_and_a_gzipped_file(capsys, pumps) -> None:
    profile, csv_path = pumps
    code, out, _ = run_cli(capsys, "profile", "check", str(profile))
    assert code == 0 and out.strip() == f"ok: profile {profile} is valid (pumps, rul_regression, 9 input columns)"
    gz = csv_path.with_name("pumps.csv.gz")
    gz.write_bytes(gzip.compress(csv_path.read_bytes()))
    code, out, err = run_cli(capsys, "profile", "check", str(profile), str(gz))
    assert code == 0, err
    assert "as its train file" in out and "8 assets" in out
