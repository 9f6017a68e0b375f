"""The CLI under hostile conditions: concurrent `invoke --life-file` writers, stale and mid-life summaries,
and user or environment errors (NaN in files, bad option values, read-only folders, an output whose parent
is a file, a corrupt registry or evaluation) that must end in one line and exit 2, leaving nothing behind."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import localkit
import pytest
from localkit import REPO, ServerProcess, run_cli


def assert_one_line_error(err: str, fragment: str) -> None:
    localkit.assert_one_line_error(err, fragment)
    assert "internal error" not in err, err


def assert_ends_with_one_error(err: str, fragment: str) -> None:
    """Notes may come first (profile init's draft summary); then exactly one error line, the last."""
    lines = [ln for ln in err.strip().splitlines() if ln]
    errors = [ln for ln in lines if "error" in ln]
    assert errors == [lines[-1]] and fragment in lines[-1], err
    assert "Traceback" not in err and "internal error" not in err, err


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _make_read_only(folder: Path) -> None:
    """No one may create files in ``folder``: its mode for a user, the immutable attribute for root (whom
    modes do not stop)."""
    if os.geteuid() != 0:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("root, and this file system has no immutable attribute: cannot make a read-only folder")


def _make_writable(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(stat.S_IRWXU)


@pytest.fixture
def read_only(tmp_path: Path):
    """An empty folder nobody may write in."""
    folder = tmp_path / "ro"
    folder.mkdir()
    _make_read_only(folder)
    yield folder
    _make_writable(folder)


# ------------------------------------------------------------------------------------------ life files
@pytest.mark.xdist_group("server")
def test_concurrent_life_file_writers_lose_nothing(server: ServerProcess, data_dir: Path, tmp_path: Path) -> None:
    """Eight `invoke --life-file` processes on one file at once, each for its own engine: all eight
    summaries are stored (before: 2-5 of 8 were lost, every process exiting 0)."""
    store = tmp_path / "life.json"
    procs = [subprocess.Popen([sys.executable, "-m", "predmaint", "invoke", "--data-dir", str(data_dir), "--test-unit",
                               str(u), "--url", f"http://127.0.0.1:{server.port}", "--life-file", str(store)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for u in range(1, 9)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert sorted(json.loads(store.read_text())) == sorted(f"FD001-unit-{u}" for u in range(1, 9))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.xdist_group("server")
def test_a_summary_from_another_model_is_dropped_with_a_warning(capsys, server: ServerProcess, data_dir: Path,
                                                               tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{server.port}"
    store = tmp_path / "life.json"
    base = ["invoke", "--data-dir", str(data_dir), "--test-unit", "34", "--url", url, "--life-file", str(store)]
    assert run_cli(capsys, *base)[0] == 0
    doc = json.loads(store.read_text())
    doc["FD001-unit-34"]["model"] = "0123456789abcdef"  # as another model would have written it
    store.write_text(json.dumps(doc))
    code, _, err = run_cli(capsys, *base)
    assert code == 0 and "made by another model; it is dropped" in err, err
    assert "FD001-unit-34" not in json.loads(store.read_text())


@pytest.mark.xdist_group("server")
def test_last_n_without_a_stored_summary_says_it_starts_mid_life(capsys, server: ServerProcess, data_dir: Path,
                                                                 tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "invoke", "--data-dir", str(data_dir), "--test-unit", "34", "--last", "30",
                           "--url", f"http://127.0.0.1:{server.port}", "--life-file", str(tmp_path / "life.json"))
    assert code == 0 and "begins mid-life (the last 30 readings)" in err, err


# ------------------------------------------------------------------------------------------ one line, exit 2
@pytest.mark.parametrize("argv,fragment", [
    (["invoke", "--test-unit", "1", "--timeout", "-1"], "--timeout: must be a number of seconds above 0"),
    (["invoke", "--test-unit", "1", "--timeout", "nan"], "--timeout: must be a number of seconds above 0"),
    (["drift", "--alpha", "5"], "--alpha must lie strictly between 0 and 1"),
])
def test_bad_option_values_exit_2(capsys, tmp_path, argv, fragment) -> None:
    code, _, err = run_cli(capsys, "--home", str(tmp_path), *argv)
    assert code == 2
    assert_one_line_error(err, fragment)


@pytest.mark.parametrize("option", ["--file", "--life-file"])
def test_nan_in_an_input_file_is_one_line_exit_2(capsys, tmp_path: Path, data_dir: Path, option: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"asset_id": "a", "readings": [{"cycle": NaN}]}' if option == "--file" else '{"a": {"count": NaN}}')
    argv = ["invoke", "--data-dir", str(data_dir), "--url", "http://127.0.0.1:9", option, str(bad)]
    if option == "--life-file":
        argv += ["--test-unit", "1"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, "NaN is not valid JSON")


def test_profile_init_into_a_read_only_folder(capsys, read_only: Path, data_dir: Path) -> None:
    out = read_only / "draft.json"
    code, _, err = run_cli(capsys, "profile", "init", str(data_dir / "ai4i2020" / "ai4i2020.csv.gz"), "--output", str(out))
    assert code == 2
    assert_ends_with_one_error(err, f"cannot write {out}")
    assert _listing(read_only) == []


def test_an_output_whose_parent_is_a_file(capsys, tmp_path: Path, data_dir: Path) -> None:
    parent = tmp_path / "afile"
    parent.write_text("x")
    out = parent / "draft.json"
    code, _, err = run_cli(capsys, "profile", "init", str(data_dir / "ai4i2020" / "ai4i2020.csv.gz"), "--output", str(out))
    assert code == 2
    assert_ends_with_one_error(err, f"cannot write {out}")


def test_a_registry_manifest_holding_a_list(capsys, tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "registry.json").write_text("[]")
    code, _, err = run_cli(capsys, "--home", str(tmp_path), "models")
    assert code == 2
    assert_one_line_error(err, "is not a registry")


def _run_folder(home: Path, evaluation: str) -> Path:
    run = home / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "evaluation.json").write_text(evaluation)
    return run


def test_report_force_on_a_corrupt_evaluation(capsys, tmp_path: Path) -> None:
    run = _run_folder(tmp_path, "{not json")
    code, _, err = run_cli(capsys, "--home", str(tmp_path), "report", "r1", "--force")
    assert code == 2
    assert_one_line_error(err, "evaluation.json is not a readable JSON object")
    assert not (run / "report.html").exists()


def test_report_force_in_a_read_only_run_folder(capsys, tmp_path: Path) -> None:
    run = _run_folder(tmp_path, json.dumps({"run_id": "r1", "profile": "cmapss"}))
    _make_read_only(run)
    try:
        code, _, err = run_cli(capsys, "--home", str(tmp_path), "report", "r1", "--force")
    finally:
        _make_writable(run)
    assert code == 2
    assert_one_line_error(err, "cannot write")
    assert _listing(run) == ["evaluation.json"]


@pytest.mark.parametrize("where", ["read-only folder", "parent is a file"])
def test_score_output_that_cannot_be_written(capsys, tmp_path: Path, data_dir: Path, model_dir: Path,
                                             read_only: Path, where: str) -> None:
    if where == "read-only folder":
        out = read_only / "scores.csv"
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "scores.csv"
    code, _, err = run_cli(capsys, "score", "--model-dir", str(model_dir), "--input",
                           str(data_dir / "cmapss" / "test_FD001.txt.gz"), "--output", str(out))
    assert code == 2
    assert_ends_with_one_error(err, f"cannot write {out}")
    assert _listing(read_only) == []
