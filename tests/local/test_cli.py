"""The `predmaint` CLI: exit codes and one-line errors for bad input, help everywhere, models/report/invoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from localkit import REPO, ServerProcess, assert_one_line_error, free_port, read_test_units, run_cli

from predmaint import cli
from predmaint.registry import Registry

# every command the CLI implements, and the `profile` and `outcome` groups themselves
COMMANDS = [*cli.COMMANDS, "profile", "outcome"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_on_every_command(capsys, command) -> None:
    code, out, _ = run_cli(capsys, *(command.split() if command else []), "--help")
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
    (["invoke", "--test-unit", "1", "--horizon", "-5"], "--horizon: must be a finite number of cycles >= 0, got -5"),
    (["invoke", "--test-unit", "1", "--horizon", "soon"], "--horizon: expected a number of cycles, got 'soon'"),
    (["start-training", "--dataset", "x"], "--state-machine"),
    (["stream", "--chunk", "0", "--input", "x"], "--chunk: must be at least 1"),
    (["stream"], "--input FILE (or - for JSON Lines on stdin) is required unless --rebuild"),
    (["stream", "--rebuild", "--input", "x"], "--rebuild takes no --input"),
    (["outcome", "add"], "give --asset, --event and --time for one outcome, or --file F for many"),
    (["outcome", "add", "--asset", "7"], "--asset needs --event (failure or maintenance) and --time"),
    (["outcome", "add", "--file", "f", "--time", "3"], "--file takes no --event or --time"),
    (["outcome", "add", "--asset", "7", "--event", "broke", "--time", "3"], "invalid choice: 'broke'"),
    (["outcome", "add", "--asset", "7", "--event", "failure", "--time", "nan"], "--time: must be a finite number"),
])
def test_usage_errors_exit_2_with_one_line(capsys, monkeypatch, tmp_path, argv, fragment) -> None:
    monkeypatch.delenv("PREDMAINT_STATE_MACHINE_ARN", raising=False)
    code, _, err = run_cli(capsys, "--home", str(tmp_path), *argv)
    assert code == 2
    assert_one_line_error(err, fragment)


def _profile_file(tmp_path: Path, name: str = "myfleet", **changes) -> Path:
    """A user's copy of cmapss.json under another name, with ``changes`` (dotted keys) applied."""
    doc = json.loads((REPO / "training_src" / "profiles" / "cmapss.json").read_text())
    doc["name"] = name
    for key, value in changes.items():
        node = doc
        *parents, leaf = key.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def test_run_bad_profile_subset_and_data_dir(capsys, tmp_path, data_dir) -> None:
    typo = _profile_file(tmp_path, "typo", label__capp=125)
    for argv, fragment in [
        (["--profile", "no-such-profile"], "unknown profile 'no-such-profile'"),
        (["--profile", "cmapss", "--subset", "FD009"], "unknown subset 'FD009'"),
        (["--data-dir", str(tmp_path / "missing")], "does not exist"),
        (["--profile", str(typo)], "label.capp: unknown key; known keys of label are ['cap', 'column', 'cv_caps', 'type']"),
        (["--profile", str(tmp_path / "nope.json")], "profile file not found"),
    ]:
        base = [] if "--data-dir" in argv else ["--data-dir", str(data_dir)]
        code, out, err = run_cli(capsys, "run", "--home", str(tmp_path / "home"), *base, *argv, "--trials", "1")
        assert code == 2, (argv, err)
        assert_one_line_error(err, fragment)
        assert out == "", "nothing is started before the input is known to be good"
    assert not (tmp_path / "home").exists(), "bad input leaves nothing behind"


def test_a_profile_file_is_used_as_written_whatever_its_name(tmp_path, data_dir) -> None:
    """The user's file travels as a document: never replaced by the shipped profile of the same name."""
    from predmaint import runner
    from training_src.profiles import load_profile

    for name, cap in (("myfleet", 125), ("cmapss", 90)):  # a copy renamed, and one still named cmapss
        (tmp_path / name).mkdir()
        path = _profile_file(tmp_path / name, name, label__cap=cap)
        profile = load_profile(path)
        plan, doc = runner.plan_locally(path, profile, data_dir)
        assert plan["profile"] == name and doc["label"]["cap"] == cap and doc == profile.to_dict()
    shipped, doc = runner.plan_locally("cmapss", load_profile("cmapss"), data_dir)
    assert doc["label"]["cap"] == 125 and shipped["profile"] == "cmapss"


def _small_fleet(root: Path, data_dir: Path, extra: str = "", units: int = 8) -> Path:
    """A data dir with FD001's test files and its first ``units`` training units, plus ``extra`` lines."""
    import gzip
    import shutil

    folder = root / "cmapss"
    folder.mkdir(parents=True)
    with gzip.open(data_dir / "cmapss" / "train_FD001.txt.gz", "rt") as src:
        lines = [ln for ln in src if ln.split() and int(ln.split()[0]) <= units]
    (folder / "train_FD001.txt").write_text("".join(lines) + extra)
    for name in ("test_FD001.txt.gz", "RUL_FD001.txt.gz"):
        shutil.copy(data_dir / "cmapss" / name, folder / name)
    return root


def _runs_left(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "runs").iterdir()) if (home / "runs").is_dir() else []


ONE_READING = "101 1 0.0 0.0 100.0 " + " ".join(["1.0"] * 21) + "\n"


@pytest.mark.parametrize("case", ["bad-value", "missing-subset", "preprocess-refuses"])
def test_run_failures_before_training_are_one_line_and_leave_no_run_folder(capsys, tmp_path, data_dir, case):
    data = _small_fleet(tmp_path / "data", data_dir, extra=ONE_READING if case == "preprocess-refuses" else "")
    if case == "bad-value":
        path = data / "cmapss" / "train_FD001.txt"
        lines = path.read_text().splitlines(keepends=True)
        lines[4] = lines[4].replace(lines[4].split()[2], "abc", 1)
        path.write_text("".join(lines))
    argv = ["--subset", "FD003"] if case == "missing-subset" else []
    home = tmp_path / "home"
    code, _, err = run_cli(capsys, "run", "--home", str(home), "--data-dir", str(data), "--trials", "1", *argv)
    assert code == 2
    assert_one_line_error(err, {
        "bad-value": "prepare: cmapss/train_FD001.txt row 5 column 'setting_1': non-numeric value 'abc'",
        "missing-subset": "no raw object for 'test': expected cmapss/test_FD003.txt",
        "preprocess-refuses": "preprocess: " + str(data / "cmapss" / "train_FD001.txt") +
                              ": asset '101' has 1 reading(s); the profile needs at least 2"}[case])
    if case == "missing-subset":
        assert f"; run `predmaint data --data-dir {data}` to download the public datasets" in err
    assert not home.exists(), f"left behind: {_runs_left(home)}"


def test_run_logs_only_with_verbose_and_quiet_silences_them(capsys, tmp_path, data_dir, monkeypatch) -> None:
    data = _small_fleet(tmp_path / "data", data_dir, extra=ONE_READING)
    argv = ["run", "--home", str(tmp_path / "home"), "--data-dir", str(data), "--trials", "1"]
    code, _, err = run_cli(capsys, *argv, "--verbose")
    assert code == 2 and "level=info" in err and "stage=preprocess" in err and "status=failed" in err
    assert err.strip().splitlines()[-1].startswith("predmaint run: error: preprocess:")
    monkeypatch.setenv("PREDMAINT_LOG_LEVEL", "INFO")
    code, out, err = run_cli(capsys, *argv, "--quiet")
    assert code == 2 and out == ""
    assert_one_line_error(err, "has 1 reading(s)")
    assert not (tmp_path / "home").exists()


def test_run_refuses_a_bad_deployment_config_before_any_work(capsys, monkeypatch, tmp_path, data_dir) -> None:
    """cdk.json is read by the typed reader the CDK app uses, up front: a misspelt key is refused with
    one line naming the file and the key, and nothing is trained or written."""
    doc = json.loads((REPO / "cdk.json").read_text())
    doc["context"]["predmaint"]["promotion"]["rul_regression"]["max_rsme"] = 25.0
    bad = tmp_path / "cdk.json"
    bad.write_text(json.dumps(doc))
    monkeypatch.setenv("PREDMAINT_CDK_JSON", str(bad))
    home = tmp_path / "home"
    code, out, err = run_cli(capsys, "run", "--home", str(home), "--data-dir", str(data_dir), "--trials", "1")
    assert code == 2 and out == ""
    assert_one_line_error(err, f"{bad}: predmaint.promotion.rul_regression.max_rsme: unknown threshold")
    assert not home.exists(), f"left behind: {_runs_left(home)}"


def test_version_is_the_installed_distributions(capsys) -> None:
    from importlib.metadata import version

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"predmaint {version('predmaint')}"


@pytest.mark.parametrize("how", ["read-only folder", "a file"])
def test_an_unwritable_registry_is_refused_before_any_work(capsys, tmp_path, data_dir, how) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if how == "a file":
        (home / "registry").write_text("not a folder")
        fragment = f"model registry {home / 'registry'} is not writable: {home / 'registry'} is not a folder"
    elif os.geteuid() == 0:  # root writes through permission bits: a folder that refuses new files for anyone
        (home / "registry").symlink_to("/sys/fs")
        fragment = f"model registry {home / 'registry'} is not writable: cannot create files in"
    else:
        (home / "registry").mkdir()
        (home / "registry").chmod(0o555)
        fragment = f"model registry {home / 'registry'} is not writable: cannot create files in"
    code, out, err = run_cli(capsys, "run", "--home", str(home), "--data-dir", str(data_dir), "--trials", "1")
    assert code == 2 and out == ""
    assert_one_line_error(err, fragment)
    assert "choose another --home" in err and not (home / "runs").exists()


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
def test_invoke_prints_the_interval_and_the_failure_probability_within_a_horizon(capsys, server: ServerProcess,
                                                                                 data_dir, tmp_path) -> None:
    url = f"http://127.0.0.1:{server.port}"
    code, out, err = run_cli(capsys, "invoke", "--data-dir", str(data_dir), "--test-unit", "34", "--horizon", "30",
                             "--url", url)
    assert code == 0, err
    line = out.strip().splitlines()[1]
    assert "FD001-unit-34" in line and "80 % [" in line and "P(failure within 30) " in line
    code, out, err = run_cli(capsys, "invoke", "--data-dir", str(data_dir), "--test-unit", "34", "--horizon", "30",
                             "--json", "--url", url)
    pred = json.loads(out)["predictions"][0]
    assert pred["horizon"] == 30 and 0 <= pred["failure_probability"] <= 1
    assert pred["rul_lower"] <= pred["rul"] <= pred["rul_upper"] and pred["interval_level"] == 0.8
    # a request file's horizon applies to its instances (an instance's own wins)
    units = read_test_units(data_dir)
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"horizon": 1000, "instances": [{"asset_id": "a", "readings": units[34]},
                                                              {"asset_id": "b", "readings": units[34], "horizon": 0}]}))
    code, out, err = run_cli(capsys, "invoke", "--file", str(req), "--json", "--url", url)
    a, b = json.loads(out)["predictions"]
    assert (a["horizon"], a["failure_probability"], b["horizon"]) == (1000, 1.0, 0)


@pytest.mark.xdist_group("server")
def test_invoke_life_file_starts_stores_and_resends_each_assets_summary(capsys, server: ServerProcess, data_dir,
                                                                       tmp_path) -> None:
    url = f"http://127.0.0.1:{server.port}"
    store = tmp_path / "life.json"
    base = ["invoke", "--data-dir", str(data_dir), "--test-unit", "34", "--json", "--url", url]
    code, out, err = run_cli(capsys, *base, "--life-file", str(store))
    assert code == 0, err
    whole = json.loads(out)["predictions"][0]
    kept = json.loads(store.read_text())
    n = len(read_test_units(data_dir)[34])
    assert kept["FD001-unit-34"]["count"] == n == whole["life"]["count"] and "stored in" in err
    # later: only the last 30 readings plus the stored summary give the whole-history answer
    code, out, err = run_cli(capsys, *base, "--last", "30", "--life-file", str(store))
    again = json.loads(out)["predictions"][0]
    assert code == 0 and again["rul"] == whole["rul"] and again["life"] == whole["life"]
    code, out, err = run_cli(capsys, *base, "--last", "30")  # no summary: the window alone
    assert json.loads(out)["predictions"][0]["life"] is None
    store.write_text("[1]")
    code, _, err = run_cli(capsys, *base, "--life-file", str(store))
    assert code == 2
    assert_one_line_error(err, "must be a JSON object of asset id -> life summary")
    assert store.read_text() == "[1]"  # refused: left as it was


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


def test_start_training_validates_the_profile_before_any_aws_call(capsys, monkeypatch, tmp_path) -> None:
    from predmaint import aws

    sent = []

    def fake(sm, dataset, profile, subset, region):
        sent.append((dataset, profile, subset))
        return "arn:aws:states:eu-west-1:1:execution:sm:run-1", "https://console/run-1"

    monkeypatch.setattr(aws, "start_training", fake)
    base = ["start-training", "--state-machine", "sm", "--dataset", "fleet", "--region", "eu-west-1"]
    typo = _profile_file(tmp_path, "typo", windows__size=[5])
    huge = _profile_file(tmp_path, "huge", description="x" * 300_000)
    for argv, fragment in [
        (["--profile", str(typo)], "profile " + str(typo) + ": windows.size: unknown key; known keys of windows"),
        (["--subset", "FD009"], "unknown subset 'FD009'"),
        (["--profile", "pumps"], "unknown profile 'pumps'"),
        (["--profile", str(huge)], "Step Functions accepts at most 262,144 (256 KB)"),
    ]:
        code, _, err = run_cli(capsys, *base, *argv)
        assert code == 2, err
        assert_one_line_error(err, fragment)
    assert sent == [], "nothing reached AWS"
    mine = _profile_file(tmp_path, "myfleet", label__cap=100)
    code, _, err = run_cli(capsys, *base, "--profile", str(mine), "--subset", "FD002")
    assert code == 0, err
    assert sent[-1] == ("fleet", {**json.loads(mine.read_text()), "subset": "FD002"}, "FD002")  # inline
    code, _, err = run_cli(capsys, *base)
    assert code == 0 and sent[-1] == ("fleet", "cmapss", "FD001")  # a shipped profile travels by name


def test_start_training_without_credentials_says_how_to_configure_them(capsys, monkeypatch, tmp_path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup (offline)
    for sm in ("arn:aws:states:eu-west-1:123456789012:stateMachine:pm", "Predmaint-Training"):
        code, _, err = run_cli(capsys, "start-training", "--state-machine", sm, "--dataset", "cmapss",
                               "--region", "eu-west-1")
        assert code == 2, err
        assert_one_line_error(err, "AWS: Unable to locate credentials; configure AWS credentials first: "
                                   "`aws configure`")


def test_invoke_a_bad_csv_names_file_row_and_column(capsys, tmp_path, test_units) -> None:
    import csv

    path = tmp_path / "engine-9.csv"
    rows = [dict(r) for r in test_units[9][:4]]
    rows[1]["sensor_2"] = "abc"  # file row 3 (the header is row 1)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    code, _, err = run_cli(capsys, "invoke", "--file", str(path), "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2
    assert_one_line_error(err, f"{path}: row 3, column 'sensor_2': not a number: 'abc'")
    path.write_text(path.read_text().splitlines()[0] + "\n1,2,3\n")
    code, _, err = run_cli(capsys, "invoke", "--file", str(path))
    assert code == 2
    assert_one_line_error(err, f"{path}: row 2: fewer values than the header has columns")


def test_score_refuses_an_unknown_output_format_before_loading_a_model(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "score", "--home", str(tmp_path), "--input", "fleet.txt", "--output",
                           str(tmp_path / "scores.xlsx"))
    assert code == 2  # before "no champion": the format is known to be wrong first
    assert_one_line_error(err, "unknown format '.xlsx'; name it .csv, .jsonl or .parquet")
