"""The whole local lifecycle on real FD001 data, as a user runs it: `predmaint run` twice (champion,
then an equal challenger that must be Rejected), `predmaint serve` as a real process, HTTP calls and
`predmaint invoke`, then SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from localkit import ServerProcess, free_port, http, request_body

PREDMAINT = [sys.executable, "-m", "predmaint"]


def run_cli(home: Path, data_dir: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREDMAINT_DATA_DIR": str(data_dir), "PREDMAINT_HOME": str(home)}
    return subprocess.run([*PREDMAINT, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.xdist_group("e2e")
def test_run_twice_serve_invoke(tmp_path: Path, data_dir: Path, test_units: dict) -> None:
    home = tmp_path / "home"
    first = run_cli(home, data_dir, "run", "--profile", "cmapss", "--subset", "FD001", "--trials", "2",
                    "--run-id", "first", "--quiet")
    assert first.returncode == 0, first.stderr[-2000:]
    evaluation = Path(first.stdout.strip().splitlines()[-1])  # contract: the report path is the last line
    assert evaluation == home / "runs" / "first" / "evaluation.json"
    report = json.loads(evaluation.read_text())
    rmse = report["regression_metrics"]["rmse"]["value"]
    assert 5 < rmse < 20 and report["improvement_pct"] > 40 and report["n_test"] == 100
    assert report["ablation"][0]["step"].startswith("baseline")
    decision = json.loads((home / "runs" / "first" / "decision.json").read_text())
    assert decision["status"] == "Approved" and decision["model_version"] == "1"
    assert (home / "runs" / "first" / "report.html").exists()

    # same data, same seed -> the same model: a tie never replaces the champion
    second = run_cli(home, data_dir, "run", "--trials", "2", "--run-id", "second", "--quiet")
    assert second.returncode == 0, second.stderr[-2000:]
    d2 = json.loads((home / "runs" / "second" / "decision.json").read_text())
    assert d2["status"] == "Rejected" and "does not beat" in d2["reason"]
    models = json.loads(run_cli(home, data_dir, "models", "--json").stdout)
    champions = [m for m in models if m.get("champion")]
    assert [str(m["version"]) for m in champions] == ["1"]

    port = free_port()
    server = ServerProcess(["--home", str(home), "serve"], port, tmp_path / "serve.log")
    try:
        server.wait_ping(200)
        status, body = http(port, "POST", "/invocations",
                            request_body([{"asset_id": "engine-20", "readings": test_units[20]}]),
                            {"Content-Type": "application/json"})
        assert status == 200
        pred = json.loads(body)["predictions"][0]
        assert pred["asset_id"] == "engine-20" and 0 <= pred["rul"] <= 125
        status, body = http(port, "POST", "/invocations", b"{oops", {"Content-Type": "application/json"})
        assert status == 400 and "malformed JSON" in json.loads(body)["error"]
        inv = run_cli(home, data_dir, "invoke", "--url", f"http://127.0.0.1:{port}", "--test-unit", "20",
                      "--test-unit", "81")
        assert inv.returncode == 0, inv.stderr
        assert "true RUL" in inv.stdout and "FD001-unit-81" in inv.stdout
    finally:
        assert server.stop() == 0
