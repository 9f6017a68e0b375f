"""The `predmaint` CLI: exit codes and one-line errors for bad input, help everywhere, models/report/invoke."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from localkit import REPO, ServerProcess, free_port

from predmaint.cli import main
from predmaint.registry import Registry

COMMANDS = ["data", "run", "serve", "invoke", "models", "report", "start-training"]


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, fragment: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err and fragment in lines[0], err


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_on_every_command(capsys, command) -> None:
    code, out, _ = run_cli(capsys, *([command] if command else []), "--help")
    assert code == 0 and "usage: predmaint" in out


@pytest.mark.parametrize("argv,fragment", [
    (["run", "--trials", "0"], "--trials: must be at least 1"),
    (["run", "--trials", "two"], "expected a whole number"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
    (["serve", "--workers", "0"], "must be at least 1"),
    (["serve", "--port", "99999"], "between 0 and 65535"),
    (["invoke"], "--file PATH"),
    (["invoke", "--test-unit", "0"], "must be at least 1"),
    (["start-training", "--dataset", "x"], "--state-machine"),
])
def test_usage_errors_exit_2_with_one_line(capsys, monkeypatch, tmp_path, argv, fragment) -> None:
    monkeypatch.delenv("PREDMAINT_STATE_MACHINE_ARN", raising=False)
    code, _, err = run_cli(capsys, "--home", str(tmp_path), *argv)
    assert code == 2
    assert_one_line_error(err, fragment)


def test_run_bad_profile_subset_and_data_dir(capsys, tmp_path, data_dir) -> None:
    for argv, fragment in [
        (["--profile", "no-such-profile"], "no-such-profile"),
        (["--profile", "cmapss", "--subset", "FD009"], "FD009"),
        (["--data-dir", str(tmp_path / "missing")], "does not exist"),
    ]:
        base = [] if "--data-dir" in argv else ["--data-dir", str(data_dir)]
        code, _, err = run_cli(capsys, "run", "--home", str(tmp_path / "home"), *base, *argv, "--trials", "1")
        assert code == 2, (argv, err)
        assert_one_line_error(err, fragment)
    assert not (tmp_path / "home" / "registry").exists()


def test_serve_unknown_version_and_no_champion(capsys, tmp_path, registry_home) -> None:
    code, _, err = run_cli(capsys, "serve", "--home", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "no champion")
    code, _, err = run_cli(capsys, "serve", "--home", str(registry_home), "--model", "42")
    assert code == 2
    assert_one_line_error(err, "model version 42 is not in the registry")


def test_serve_corrupt_artifact(capsys, tmp_path, model_tar) -> None:
    package = Registry(tmp_path).register(artifact=model_tar, evaluation={}, lineage={}, approved=True,
                                          reason="x", run_id="r")
    package.artifact.write_bytes(package.artifact.read_bytes()[:1000])  # truncated on disk after registration
    code, _, err = run_cli(capsys, "serve", "--home", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "does not match its recorded SHA-256")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"definitely not gzip")
    code, _, err = run_cli(capsys, "serve", "--home", str(tmp_path), "--model-dir", str(bad))
    assert code == 2
    assert_one_line_error(err, "not a valid model.tar.gz")
    code, _, err = run_cli(capsys, "serve", "--home", str(tmp_path), "--model-dir", str(tmp_path / "nope"))
    assert code == 2
    assert_one_line_error(err, "does not exist")


def test_serve_resolves_a_model_tar_gz(tmp_path, model_tar) -> None:
    import argparse

    from predmaint.cli import _resolve_model_dir

    args = argparse.Namespace(model_dir=str(model_tar), model=None, home=tmp_path)
    d, version = _resolve_model_dir(args)
    assert version is None and (d / "code" / "inference.py").is_file() and (d / "xgboost-model").is_file()
    assert _resolve_model_dir(args)[0] == d  # extracted once


def test_models_table_marks_the_champion(capsys, tmp_path, model_tar) -> None:
    code, out, _ = run_cli(capsys, "models", "--home", str(tmp_path))
    assert code == 0 and "no models registered yet" in out
    r = Registry(tmp_path)
    ev = {"regression_metrics": {"rmse": {"value": 20.0}}}
    r.register(artifact=model_tar, evaluation=ev, lineage={}, approved=True, reason="no champion yet", run_id="a")
    r.register(artifact=model_tar, evaluation={"regression_metrics": {"rmse": {"value": 25.0}}}, lineage={},
               approved=False, reason="rmse 25 does not beat champion's 20", run_id="b")
    code, out, _ = run_cli(capsys, "models", "--home", str(tmp_path))
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split()[:4] == ["VERSION", "STATUS", "CHAMPION", "METRIC"]
    assert lines[1].split()[:3] == ["2", "Rejected", "rmse=25"]
    assert lines[2].split()[:4] == ["1", "Approved", "*", "rmse=20"]
    code, out, _ = run_cli(capsys, "models", "--home", str(tmp_path), "--json")
    assert [p["version"] for p in json.loads(out)] == [2, 1]


def test_report_unknown_run(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "report", "nope", "--home", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "run 'nope' not found")


def test_invoke_bad_file_and_unknown_unit(capsys, tmp_path, data_dir) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = run_cli(capsys, "invoke", "--file", str(bad))
    assert code == 2
    assert_one_line_error(err, "not valid JSON")
    code, _, err = run_cli(capsys, "invoke", "--data-dir", str(data_dir), "--test-unit", "500")
    assert code == 2
    assert_one_line_error(err, "test unit 500 is not in")


def test_invoke_without_server_is_a_failure_not_a_traceback(capsys, data_dir) -> None:
    code, _, err = run_cli(capsys, "invoke", "--data-dir", str(data_dir), "--test-unit", "1", "--url",
                           f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert code == 1
    assert_one_line_error(err, "is `predmaint serve` running?")


@pytest.mark.xdist_group("server")
def test_invoke_test_units_against_the_server(capsys, server: ServerProcess, data_dir) -> None:
    code, out, err = run_cli(capsys, "invoke", "--data-dir", str(data_dir), "--test-unit", "1", "--test-unit", "34",
                             "--url", f"http://127.0.0.1:{server.port}")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("model 1 · 2 prediction(s)")
    assert "FD001-unit-1" in lines[1] and "true RUL   112" in lines[1]  # RUL_FD001 line 1 is 112
    assert "FD001-unit-34" in lines[2] and "true RUL     7" in lines[2]  # RUL_FD001 line 34 is 7


@pytest.mark.xdist_group("server")
def test_invoke_from_csv_and_json_files(capsys, server: ServerProcess, test_units, tmp_path) -> None:
    import csv

    path = tmp_path / "engine-9.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(test_units[9][0]))
        w.writeheader()
        w.writerows(test_units[9])
    code, out, err = run_cli(capsys, "invoke", "--file", str(path), "--url", f"http://127.0.0.1:{server.port}")
    assert code == 0, err
    assert "engine-9" in out and "predicted RUL" in out
    js = tmp_path / "req.json"
    js.write_text(json.dumps(test_units[9]))  # a bare list of readings = one asset
    code, out, err = run_cli(capsys, "invoke", "--file", str(js), "--json", "--url",
                             f"http://127.0.0.1:{server.port}")
    assert code == 0, err
    assert json.loads(out)["predictions"][0]["asset_id"] == "req"


def test_console_script_errors_have_no_traceback(tmp_path) -> None:
    """The real entry point (python -m predmaint) for a few bad inputs."""
    for argv in (["run", "--trials", "0"], ["serve", "--model", "3"], ["report", "x"]):
        proc = subprocess.run([sys.executable, "-m", "predmaint", "--home", str(tmp_path), *argv],
                              capture_output=True, text=True, timeout=60, cwd=REPO)
        assert proc.returncode == 2, proc.stderr
        assert_one_line_error(proc.stderr, "error")


def test_global_options_work_after_the_command(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PREDMAINT_HOME", str(tmp_path / "from-env"))
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and str(tmp_path / "from-env") in out
    code, out, _ = run_cli(capsys, "models", "--home", str(tmp_path / "flag"))
    assert code == 0 and str(tmp_path / "flag") in out
    assert not Path(tmp_path / "from-env" / "registry").exists()


def test_start_training_calls_aws_and_maps_errors(capsys, monkeypatch) -> None:
    from predmaint import aws

    calls = []

    def fake(sm, dataset, profile, subset, region):
        calls.append((sm, dataset, profile, subset, region))
        if dataset == "broken":
            raise aws.StartTrainingError("cannot start arn:x: AccessDenied")
        return "arn:aws:states:eu-west-1:1:execution:sm:run-1", "https://console/run-1"

    monkeypatch.setattr(aws, "start_training", fake)
    code, out, _ = run_cli(capsys, "start-training", "--state-machine", "Predmaint-Training", "--dataset", "fd001",
                           "--subset", "FD001", "--region", "eu-west-1")
    assert code == 0 and out.splitlines() == ["started execution arn:aws:states:eu-west-1:1:execution:sm:run-1",
                                              "https://console/run-1"]
    assert calls[-1] == ("Predmaint-Training", "fd001", "cmapss", "FD001", "eu-west-1")
    code, _, err = run_cli(capsys, "start-training", "--state-machine", "sm", "--dataset", "broken", "--region", "x")
    assert code == 1
    assert_one_line_error(err, "AccessDenied")
