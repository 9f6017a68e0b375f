"""Fault injection on real processes (loopback only; every loop bounded in count and time).

* A server worker SIGKILLed under load is replaced, ``/ping`` is healthy again within RECOVERY_S, and the
  failed requests are counted and bounded (at most the requests in flight on the dead worker).
* A missing or corrupt model artifact: ``/ping`` answers 503 naming the problem, a clear log line, no
  crash loop (worker PIDs stay the same).
* SIGINT, SIGTERM or SIGKILL in the middle of ``predmaint run``: the registry manifest is byte-for-byte
  unchanged, the champion is the same, and a rerun completes.
* A full disk (RLIMIT_FSIZE: writes fail with EFBIG, as with ENOSPC) or an unwritable home: a one-line
  error, a non-zero exit, the registry unchanged, nothing half-written.
"""

from __future__ import annotations

import contextlib
import http.client as httpclient
import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from localkit import PY, REPO, ServerProcess, build_model, free_port, http, request_body

pytestmark = pytest.mark.xdist_group("reliability-faults")
JSON = {"Content-Type": "application/json"}
RECOVERY_S = 10.0  # a killed worker is replaced and /ping healthy within this (measured: ~1-2 s)
HANG_GUARD_S = 600.0  # not a speed bound: only how long a hung process may hang the suite


# ------------------------------------------------------------------------------------------------
# Worker killed under load
# ------------------------------------------------------------------------------------------------
def _load(port: int, body: bytes, stop: threading.Event, deadline: float, out: dict, lock: threading.Lock) -> None:
    """One keep-alive client sending requests until ``stop`` or ``deadline``; counts outcomes."""
    conn = None
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if conn is None:
                conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/invocations", body, JSON)
            resp = conn.getresponse()
            resp.read()
            key = "ok" if resp.status == 200 else f"http_{resp.status}"
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, httpclient.HTTPException):
            key = "connection_error"
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            out[key] = out.get(key, 0) + 1
            out.setdefault("log", []).append((time.monotonic(), key))
    if conn is not None:
        conn.close()


def test_worker_killed_under_load_is_replaced_and_failures_are_bounded(registry_home, test_units, tmp_path) -> None:
    clients, workers = 8, 2
    srv = ServerProcess(["serve", "--home", str(registry_home), "--workers", str(workers)], free_port(),
                        tmp_path / "s.log")
    try:
        srv.wait_ping()
        before = srv.wait_workers(workers)
        body = request_body([{"asset_id": "a", "readings": test_units[3]}])
        stop, lock, out = threading.Event(), threading.Lock(), {}
        deadline = time.monotonic() + 30  # hard bound on the load
        threads = [threading.Thread(target=_load, args=(srv.port, body, stop, deadline, out, lock))
                   for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(2.0)  # steady load
        victim = min(before)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replaced_in = None
        while time.monotonic() - killed_at < RECOVERY_S:
            now = srv.workers()
            if len(now) == workers and victim not in now:
                with contextlib.suppress(OSError):
                    if http(srv.port, "GET", "/ping", timeout=2)[0] == 200:
                        replaced_in = time.monotonic() - killed_at
                        break
            time.sleep(0.05)
        time.sleep(3.0)  # load continues on the replacement
        stop.set()
        for t in threads:
            t.join(15)
        failed = {k: v for k, v in out.items() if k not in ("ok", "log")}
        late = [k for ts, k in out["log"] if ts > killed_at + RECOVERY_S and k != "ok"]
        print(f"\nworker kill under load: {out.get('ok', 0)} ok, failed {failed or 0}, "
              f"replaced and /ping 200 after {replaced_in:.2f} s" if replaced_in else "not replaced")
        assert replaced_in is not None and replaced_in < RECOVERY_S, srv.output()[-2000:]
        # only the requests in flight on the dead worker may fail (one per client at most)
        assert sum(failed.values()) <= clients, failed
        assert not any(k.startswith("http_5") and k != "http_502" for k in failed), failed
        assert late == [], "errors after recovery"
        assert out.get("ok", 0) > 50
        # and the server is fully healthy afterwards
        assert http(srv.port, "POST", "/invocations", body, JSON)[0] == 200
    finally:
        assert srv.stop() == 0


# ------------------------------------------------------------------------------------------------
# Missing or corrupt artifact
# ------------------------------------------------------------------------------------------------
def _break_missing_booster(d: Path) -> None:
    (d / "xgboost-model").unlink()


def _break_corrupt_spec(d: Path) -> None:
    (d / "feature_spec.json").write_text('{"truncated": ')


def _break_missing_code(d: Path) -> None:
    (d / "code" / "inference.py").unlink()


def _break_truncated_booster(d: Path) -> None:
    raw = (d / "xgboost-model").read_bytes()
    (d / "xgboost-model").write_bytes(raw[: len(raw) // 2])


@pytest.mark.parametrize("breakage", [_break_missing_booster, _break_missing_code], ids=lambda f: f.__name__[7:])
def test_missing_artifact_file_is_refused_at_start_with_one_line(breakage, model_dir: Path, tmp_path: Path) -> None:
    """`serve` checks the files before forking: exit 2 and one line naming what is missing."""
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    breakage(bad)
    proc = subprocess.run([PY, "-m", "predmaint", "serve", "--model-dir", str(bad), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "lacks" in lines[0], proc.stderr


@pytest.mark.parametrize("breakage", [_break_corrupt_spec, _break_truncated_booster], ids=lambda f: f.__name__[7:])
def test_broken_artifact_answers_503_without_crash_loop(breakage, model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    breakage(bad)
    srv = ServerProcess(["serve", "--model-dir", str(bad), "--workers", "2"], free_port(), tmp_path / "s.log")
    try:
        srv.wait_ping(expect=503, timeout=30)
        workers = srv.wait_workers(2)
        time.sleep(1.5)  # a crash loop would replace the workers in this time
        status, body = http(srv.port, "GET", "/ping")
        assert status == 503 and json.loads(body)["error"].startswith("model not loaded: ")
        status, body = http(srv.port, "POST", "/invocations", b'{"instances": []}', JSON)
        assert status == 503 and json.loads(body)["error"].startswith("model not loaded: ")
        assert srv.workers() == workers, "workers restarted: crash loop"
        log = srv.output()
        assert "model failed to load" in log and "Traceback" not in log
    finally:
        assert srv.stop() == 0


def test_missing_model_dir_is_a_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([PY, "-m", "predmaint", "serve", "--model-dir", str(tmp_path / "nope"), "--port",
                           str(free_port())], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "does not exist" in proc.stderr and str(tmp_path / "nope") in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------------
# Interrupted pipeline runs, full disk, unwritable home
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_data(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FD001 with the first 25 training units (the whole test set): a run takes seconds, not minutes."""
    root = tmp_path_factory.mktemp("small")
    build_model(data_dir, root)  # writes root/data/cmapss/... as a side effect, plus a model we ignore
    return root / "data"


def _registry_state(home: Path) -> tuple[bytes, list[str]]:
    reg = home / "registry"
    return (reg / "registry.json").read_bytes(), sorted(p.name for p in (reg / "packages").iterdir())


class Run:
    """A `predmaint run` subprocess whose stdout/stderr are drained by threads (a full pipe would block it)."""

    def __init__(self, home: Path, data: Path, run_id: str, trials: int = 3):
        self.proc = subprocess.Popen([PY, "-m", "predmaint", "run", "--profile", "cmapss", "--subset", "FD001",
                                      "--trials", str(trials), "--parallel", "1", "--run-id", run_id, "--home",
                                      str(home), "--data-dir", str(data)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.out: list[str] = []
        self.err: list[str] = []
        self.seen = threading.Event()
        self.marker = ""
        self._threads = [threading.Thread(target=self._drain, args=(self.proc.stdout, self.out), daemon=True),
                         threading.Thread(target=self._drain, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    def _drain(self, stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            if self.marker and self.marker in line:
                self.seen.set()

    def wait_for(self, marker: str, timeout: float = 180) -> None:
        self.marker = marker
        if any(marker in ln for ln in self.out + self.err):
            return
        if not self.seen.wait(timeout):
            self.proc.kill()
            raise AssertionError(f"never saw {marker!r}: {''.join(self.err)[-2000:]}")

    def stop_with(self, sig: signal.Signals) -> float:
        """Send ``sig`` and wait for the process to exit (the event); return the seconds it took, for the
        log only. How fast a loaded machine stops is not asserted: the run kills its trials in the signal
        handler itself, so stopping does not wait for them. HANG_GUARD_S only keeps a hung run from
        hanging the suite."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{sig.name} did not stop the run (hung {HANG_GUARD_S:.0f} s)") from None
        for t in self._threads:
            t.join()
        return time.monotonic() - t0


@pytest.fixture
def home(registry_home: Path, tmp_path: Path) -> Path:
    """A private copy of the registry home whose champion is the test model (version 1)."""
    h = tmp_path / "home"
    shutil.copytree(registry_home, h)
    return h


# killed at different stages: SIGINT while train.py trials run, SIGTERM and SIGKILL while preprocessing
@pytest.mark.parametrize("sig,stage", [(signal.SIGINT, "tuning"), (signal.SIGTERM, "preprocess"),
                                       (signal.SIGKILL, "preprocess")], ids=lambda v: getattr(v, "name", v))
def test_interrupted_run_leaves_registry_and_champion_unchanged(sig, stage, home: Path, small_data: Path) -> None:
    from predmaint.registry import Registry

    before = _registry_state(home)
    champion = Registry(home).champion().version
    run = Run(home, small_data, f"killed-{sig.name.lower()}")
    run.wait_for(stage)
    time.sleep(0.5)
    stopped_in = run.stop_with(sig)
    print(f"\n{sig.name} during {stage}: stopped in {stopped_in:.1f} s")
    if sig is signal.SIGKILL:
        assert run.proc.returncode == -signal.SIGKILL
    else:
        # the last line is the clear one (optuna may log the interrupted trial above it)
        last = "".join(run.err).strip().splitlines()[-1]
        assert run.proc.returncode == 130, (run.proc.returncode, last)  # docs/contract.md: 130 interrupted
        assert "interrupted; the registry and champion are unchanged" in last, last
        assert not (home / "runs" / f"killed-{sig.name.lower()}").exists()  # the stopped run leaves no folder
    assert _registry_state(home) == before
    assert Registry(home).champion().version == champion
    if sig is signal.SIGINT:  # the trial subprocesses were killed with the run
        time.sleep(0.5)
        assert subprocess.run(["pgrep", "-f", str(home)], capture_output=True).stdout == b""
    if sig is signal.SIGTERM:  # and a rerun (same home, new run id) completes and registers one package
        rerun = subprocess.run([PY, "-m", "predmaint", "run", "--profile", "cmapss", "--subset", "FD001", "--trials",
                                "1", "--run-id", "rerun", "--home", str(home), "--data-dir", str(small_data),
                                "--quiet"], capture_output=True, text=True, timeout=400, cwd=REPO)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert Path(rerun.stdout.strip().splitlines()[-1]) == home / "runs" / "rerun" / "evaluation.json"
        assert len(Registry(home).list_packages()) == len(before[1]) + 1


def _limit_file_size(max_bytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def test_full_disk_during_a_run_is_a_clear_error_and_nothing_is_registered(home: Path, small_data: Path) -> None:
    before = _registry_state(home)
    proc = subprocess.run([PY, "-m", "predmaint", "run", "--profile", "cmapss", "--subset", "FD001", "--trials",
                           "1", "--run-id", "full", "--home", str(home), "--data-dir", str(small_data), "--quiet"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, preexec_fn=_limit_file_size(64 * 1024))
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]  # the stage log lines come first
    assert last.startswith("predmaint run: error: preprocess failed") and "File too large" in last, last
    assert _registry_state(home) == before
    processed = home / "runs" / "full" / "processed"
    assert not processed.exists() or not any(p.name != ".preprocess" and not p.name.startswith(".")
                                             for p in processed.iterdir()), "partial preprocessing output"


def test_full_disk_while_registering_leaves_the_registry_unchanged(home: Path, model_tar: Path) -> None:
    before = _registry_state(home)
    code = ("import sys; from pathlib import Path; from predmaint.registry import Registry\n"
            f"Registry(Path({str(home)!r})).register(artifact=Path({str(model_tar)!r}), evaluation={{}}, lineage={{}}, "
            "approved=True, reason='disk full test', run_id='disk-full')")
    # room for small files, not for a copy of the artifact
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
                          preexec_fn=_limit_file_size(model_tar.stat().st_size // 2))
    assert proc.returncode != 0 and "File too large" in proc.stderr
    assert _registry_state(home) == before
    staging = home / "registry" / ".staging"
    assert not staging.exists() or not any(staging.iterdir()), "staging left behind"


def test_unwritable_home_is_a_one_line_usage_error(small_data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the home folder should be")  # unwritable even for root
    proc = subprocess.run([PY, "-m", "predmaint", "run", "--trials", "1", "--home", str(blocker), "--data-dir",
                           str(small_data)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    # checked before any work (a run that cannot be written or registered is not started)
    assert len(lines) == 1 and f"runs folder {blocker / 'runs'} is not writable: {blocker} is not a folder" in lines[0], \
        proc.stderr
    assert blocker.read_text().startswith("a file")
