"""Helpers for local-mode tests (imported by conftest.py and the tests; tests/local is put on sys.path)."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from predmaint.processes import terminate

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
COLUMNS = ["unit", "cycle", "setting_1", "setting_2", "setting_3", *[f"sensor_{i}" for i in range(1, 22)]]


def build_model(data_dir: Path, out: Path, train_units: int = 25) -> Path:
    """preprocess.py + train.py (SageMaker script contract) on the first ``train_units`` FD001 training
    units (the whole test set), with few boosting rounds: a real artifact in ~10 s instead of ~20 s. It is
    a refit (train+validation), as the pipeline's champion is, so it carries its interval calibration."""
    import shutil

    small = out / "data" / "cmapss"
    small.mkdir(parents=True)
    with gzip.open(data_dir / "cmapss" / "train_FD001.txt.gz", "rt") as src, open(small / "train_FD001.txt", "w") as dst:
        dst.writelines(line for line in src if line.split() and int(line.split()[0]) <= train_units)
    for name in ("test_FD001.txt.gz", "RUL_FD001.txt.gz"):
        shutil.copy(data_dir / "cmapss" / name, small / name)
    pp, model = out / "pp", out / "model"
    subprocess.run([PY, str(REPO / "training_src" / "preprocess.py"), "--profile", "cmapss", "--subset", "FD001",
                    "--data-dir", str(out / "data"), "--output-dir", str(pp)], check=True, capture_output=True)
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(pp / "train"), "SM_CHANNEL_VALIDATION": str(pp / "validation"),
           "SM_MODEL_DIR": str(model), "SM_OUTPUT_DATA_DIR": str(out / "train-out")}
    subprocess.run([PY, str(REPO / "training_src" / "train.py"), "--algorithm", "xgboost", "--num_round", "30",
                    "--max_depth", "4", "--nthread", "1", "--fit_on", "train+validation"], check=True,
                   capture_output=True, env=env)
    return model


def read_test_units(data_dir: Path) -> dict[int, list[dict[str, float]]]:
    """FD001 test readings by unit, as endpoint readings (cycle, settings, sensors)."""
    units: dict[int, list[dict[str, float]]] = {}
    with gzip.open(data_dir / "cmapss" / "test_FD001.txt.gz", "rt") as f:
        for line in f:
            parts = line.split()
            if parts:
                units.setdefault(int(parts[0]), []).append(
                    {c: float(v) for c, v in zip(COLUMNS[1:], parts[1:], strict=True)})
    return units


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def children(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (gunicorn workers of a master)."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (d / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(d.name))
    return out


class ServerProcess:
    """A `predmaint serve ...` subprocess; its stderr goes to ``log``."""

    def __init__(self, args: list[str], port: int, log: Path, env: dict[str, str] | None = None):
        self.port, self.log = port, log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([PY, "-m", "predmaint", *args, "--port", str(port)], stdout=self._log,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO)

    def wait_ping(self, expect: int = 200, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        status = -1
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError):
                status, _ = http(self.port, "GET", "/ping", timeout=5)
                if status == expect:
                    return status
            time.sleep(0.1)
        raise AssertionError(f"/ping did not answer {expect} (last {status}):\n{self.output()}")

    def workers(self) -> set[int]:
        return children(self.proc.pid)

    def wait_workers(self, n: int, timeout: float = 20.0) -> set[int]:
        """The worker PIDs once there are exactly ``n`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            w = self.workers()
            if len(w) == n:
                return w
            time.sleep(0.05)
        raise AssertionError(f"expected {n} workers, have {self.workers()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        code = terminate(self.proc, timeout)
        self._log.close()
        return code


def request_body(instances: list[dict[str, Any]]) -> bytes:
    return json.dumps({"instances": instances}).encode()


def run_cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """``predmaint.cli.main(argv)`` in-process: (exit code, stdout, stderr); argparse's exits included."""
    from predmaint.cli import main

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
