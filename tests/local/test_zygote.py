"""The runner's script server (predmaint/zygote.py): forked scripts behave like fresh interpreters."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from predmaint import zygote

pytestmark = pytest.mark.skipif(not zygote.available(), reason="script server needs Linux fork + SCM_RIGHTS")

SCRIPT = """
import os, sys, time
print("argv", sys.argv[1:], flush=True)
print("env", os.environ.get("ZYGOTE_TEST"), os.environ.get("ONLY_IN_PARENT"), flush=True)
print("cwd", os.getcwd(), flush=True)
print("to stderr", file=sys.stderr)
if "--sleep" in sys.argv:
    print("sleeping", flush=True)
    time.sleep(60)
if "--raise" in sys.argv:
    raise RuntimeError("boom")
if __name__ == "__main__":
    sys.exit(int(os.environ.get("EXIT", "0")))
"""


@pytest.fixture
def server(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "script.py").write_text(SCRIPT)
    z = zygote.Zygote(src, f"test-{tmp_path}", {**os.environ, "ONLY_IN_PARENT": "yes"})
    yield z, src / "script.py"
    z.close()


def test_script_runs_as_main_with_its_own_argv_env_cwd_and_exit_code(server, tmp_path: Path) -> None:
    z, script = server
    env = {"PATH": os.environ.get("PATH", ""), "ZYGOTE_TEST": "42", "EXIT": "3"}
    proc = z.spawn(script, ["--a", "1"], env, cwd=tmp_path)
    out, err = proc.communicate()
    assert proc.returncode == 3
    assert out.splitlines() == ["argv ['--a', '1']", "env 42 None", f"cwd {tmp_path}"]
    assert err.strip() == "to stderr"


def test_an_exception_is_exit_1_with_the_traceback_on_stderr(server) -> None:
    z, script = server
    proc = z.spawn(script, ["--raise"], {})
    _out, err = proc.communicate()
    assert proc.returncode == 1 and "RuntimeError: boom" in err.splitlines()[-1]


def test_lines_stream_while_running_and_kill_stops_the_child(server) -> None:
    z, script = server
    proc = z.spawn(script, ["--sleep"], {})
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("sleeping"):
            break
    assert proc.poll() is None
    t = time.monotonic()
    proc.kill()
    assert proc.wait(10) == -signal.SIGKILL and time.monotonic() - t < 5
    proc.kill()  # after the child was reaped: nothing happens


def test_closing_the_server_kills_running_children(server) -> None:
    z, script = server
    proc = z.spawn(script, ["--sleep"], {})
    assert proc.stdout.readline().startswith("argv")
    pid = proc.pid
    z.close()
    assert z.proc.returncode == 0
    with pytest.raises(ProcessLookupError):  # killed and reaped by the server before it exited
        os.kill(pid, 0)


def test_runs_train_py_like_the_interpreter(tmp_path: Path) -> None:
    """train.py through the server: same exit code and message as `python train.py` for bad input."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(tmp_path / "nothing"), "SM_MODEL_DIR": str(tmp_path / "m")}
    direct = subprocess.run([sys.executable, str(repo / "training_src" / "train.py"), "--algorithm", "linear"],
                            env=env, capture_output=True, text=True)
    z = zygote.Zygote(repo / "training_src", f"test-{tmp_path}", dict(os.environ))
    try:
        proc = z.spawn(repo / "training_src" / "train.py", ["--algorithm", "linear"], env)
        out, err = proc.communicate()
    finally:
        z.close()
    assert (proc.returncode, out, err) == (direct.returncode, direct.stdout, direct.stderr)
    assert proc.returncode == 2 and "has no feature_spec.json" in err, err


def test_the_refit_and_the_evaluation_are_fresh_interpreters_started_after_the_server_is_gone(
        tmp_path: Path, data_dir: Path, monkeypatch) -> None:
    """Only the tuning trials are forks of the script server; the refit and the evaluation, one long process
    each, run as SageMaker runs them (a fresh interpreter holding its script's own imports, not the server's
    for every stage) with the scripts' thread settings, and the server is shut down before them."""
    from predmaint import registry, runner
    from training_src import candidates

    events: list[tuple] = []

    class Server:
        def close(self) -> None:
            events.append(("server closed",))

    def fake_run_script(args, env, what, cwd=None, server=None):
        events.append((what, server, (env or {}).get("OMP_WAIT_POLICY"), (env or {}).get("OPENBLAS_NUM_THREADS"),
                       (env or {}).get("GOMP_SPINCOUNT")))
        if what == "evaluate":
            raise RuntimeError("stop here")
        return "done\n"

    def fake_tune(run_dir, prof, trials, parallel, seed, progress, server, plan):
        events.append(("tuning", server))
        best = {"algorithm": "xgboost", "params": candidates.get("xgboost").START, "value": 1.0, "trial": 0}
        return {"best": best}

    monkeypatch.setattr(runner, "_start_server", lambda run_dir: Server())
    monkeypatch.setattr(runner, "_run_script", fake_run_script)
    monkeypatch.setattr(runner, "tune", fake_tune)
    monkeypatch.setattr(registry, "make_model_archive", lambda src, dst: dst)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    with pytest.raises(RuntimeError, match="stop here"):
        runner.run_pipeline("cmapss", "FD001", data_dir, tmp_path / "home", trials=1, progress=False)
    assert [e[0] for e in events] == ["preprocess", "tuning", "server closed", "refit", "evaluate"]
    assert isinstance(events[1][1], Server)  # the trials are the server's
    # one BLAS thread, as the trials; no passive OpenMP wait, which only the trials' server starts with, but a
    # bounded spin (a waiting OpenMP thread sleeps after 1,000 spins, not 300,000)
    assert events[3][1:] == (None, None, "1", "1000") and events[4][1:] == (None, None, "1", "1000")
    trials = runner.script_environment(runner.TRIAL_THREADS)
    assert trials["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in trials  # libgomp takes it over PASSIVE


def test_a_wait_policy_of_the_environments_own_keeps_its_spin(monkeypatch) -> None:
    """libgomp takes ``GOMP_SPINCOUNT`` over ``OMP_WAIT_POLICY``: where the environment sets a wait policy, the
    scripts' environment adds no spin count (it would undo the policy), and a spin count it sets is kept."""
    from predmaint import runner

    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    env = runner.script_environment()
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in env and env["OPENBLAS_NUM_THREADS"]
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "50")
    assert runner.script_environment()["GOMP_SPINCOUNT"] == "50"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    assert runner.script_environment()["GOMP_SPINCOUNT"] == "1000"


def test_a_trial_fork_holds_the_training_libraries_and_no_plotting_library(tmp_path: Path) -> None:
    """The server preloads what train.py needs; every fork holds the server's pages, so matplotlib (only
    the evaluation plots, and it is a fresh interpreter) is not among them."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "probe.py").write_text("import sys\nimport json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n")
    z = zygote.Zygote(Path(__file__).resolve().parents[2] / "training_src", f"test-{tmp_path}", dict(os.environ))
    try:
        proc = z.spawn(src / "probe.py", [], dict(os.environ))
        out, err = proc.communicate()
    finally:
        z.close()
    assert proc.returncode == 0, err
    modules = set(json.loads(out))
    assert {"numpy", "pandas", "pyarrow", "xgboost", "sklearn", "training_src"} <= modules
    assert "matplotlib" not in modules
