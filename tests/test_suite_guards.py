"""The suite's own guards in tests/conftest.py, each run as a real pytest session: a native-code test
that skips where a C compiler is on PATH fails (a build or load error must not hide as a skip), a test
whose environment an install step builds fails instead of skipping in CI (and .ci/run sets ``CI``), and
``xdist_group`` really keeps a group on one worker under ``--dist loadgroup`` (pytest 9 + xdist 3.8), and a
passed test's temporary files are removed when it ends (the project's ``tmp_path_retention_policy``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = '''
import pytest

@pytest.mark.skipif(True, reason="no C compiler here")
def test_skipif_on_the_compiler():
    pass

def test_skip_at_run_time():
    pytest.skip("no C compiler with AddressSanitizer here")

@pytest.mark.native
@pytest.mark.skip(reason="library did not load")
def test_marked_native():
    pass

@pytest.mark.skip(reason="needs a GPU")
def test_unrelated_skip():
    pass

@pytest.mark.xfail(reason="no C compiler here", run=False)
def test_xfail_is_left_alone():
    pass
'''


def _session(tmp_path: Path, path_dirs: list[str], cases: str = CASES, ci: str | None = None) -> dict[str, str]:
    (tmp_path / "test_cases.py").write_text(cases)
    env = {**os.environ, "PATH": os.pathsep.join(path_dirs), "PYTHONPATH": str(REPO / "tests")}
    env.pop("CC", None)
    env.pop("CI", None)
    if ci is not None:
        env["CI"] = ci
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-v",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_cases.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    outcomes = dict(re.findall(r"::test_(\w+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL)", proc.stdout))
    assert outcomes, proc.stdout + proc.stderr
    return outcomes


def test_a_native_skip_fails_where_a_compiler_is_installed(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "cc").symlink_to(cc or "/bin/true")
    got = _session(tmp_path, [str(tools), str(Path(sys.executable).parent)])
    # a skipif fails at setup: pytest reports an ERROR (the run fails either way)
    assert got == {"skipif_on_the_compiler": "ERROR", "skip_at_run_time": "FAILED", "marked_native": "ERROR",
                   "unrelated_skip": "SKIPPED", "xfail_is_left_alone": "XFAIL"}


def test_without_a_compiler_a_native_skip_stays_a_skip(tmp_path: Path) -> None:
    got = _session(tmp_path, [str(Path(sys.executable).parent)])  # the venv's bin: python, no cc
    assert got == {"skipif_on_the_compiler": "SKIPPED", "skip_at_run_time": "SKIPPED", "marked_native": "SKIPPED",
                   "unrelated_skip": "SKIPPED", "xfail_is_left_alone": "XFAIL"}


ENVIRONMENT_CASES = '''
import pytest

@pytest.mark.skipif(True, reason="run `make checkov-setup` (part of `make test`)")
def test_missing_checkov():
    pass

def test_missing_container_venv():
    pytest.skip(".venv-container is missing: run `make container-setup`")

def test_missing_node():
    pytest.skip("needs node and `npm ci` (make setup)")

def test_missing_data():
    pytest.skip("no data directory: set PREDMAINT_DATA_DIR or run `predmaint data`")

@pytest.mark.environment
@pytest.mark.skip(reason="the SDK venv is absent")
def test_marked_environment():
    pass

@pytest.mark.skip(reason="needs a GPU")
def test_unrelated_skip():
    pass
'''
ENV_NAMES = ("missing_checkov", "missing_container_venv", "missing_node", "missing_data", "marked_environment")


def test_in_ci_a_missing_environment_fails_instead_of_skipping(tmp_path: Path) -> None:
    got = _session(tmp_path, [str(Path(sys.executable).parent)], ENVIRONMENT_CASES, ci="true")
    # a skipif or skip mark fails at setup: pytest reports an ERROR (the run fails either way)
    assert {k: v for k, v in got.items() if k != "unrelated_skip"} == {
        "missing_checkov": "ERROR", "missing_container_venv": "FAILED", "missing_node": "FAILED",
        "missing_data": "FAILED", "marked_environment": "ERROR"}
    assert got["unrelated_skip"] == "SKIPPED"


def test_outside_ci_a_missing_environment_stays_a_skip(tmp_path: Path) -> None:
    for ci in (None, "false"):
        got = _session(tmp_path, [str(Path(sys.executable).parent)], ENVIRONMENT_CASES, ci=ci)
        assert got == {name: "SKIPPED" for name in (*ENV_NAMES, "unrelated_skip")}, ci


def test_ci_run_sets_ci(tmp_path: Path) -> None:
    """.ci/run exports CI=true itself (overriding an empty or false value), so the guard above is on."""
    fake = tmp_path / "bin"
    fake.mkdir()
    make = fake / "make"
    make.write_text(f'#!/bin/sh\necho "CI=$CI ARGS=$*" > {tmp_path / "seen"}\n')
    make.chmod(0o755)
    env = {**os.environ, "PATH": os.pathsep.join([str(fake), "/usr/bin", "/bin"]), "CI": "false"}
    proc = subprocess.run([str(REPO / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "seen").read_text().strip() == "CI=true ARGS=test"


GROUPED = '''
import os

import pytest

pytestmark = pytest.mark.xdist_group("shared")

@pytest.mark.parametrize("n", range(6))
def test_member(n):
    print("worker", os.environ["PYTEST_XDIST_WORKER"])
'''


def test_an_xdist_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-v", "-n", "2",
                           "--dist", "loadgroup", "--rootdir", str(tmp_path), "-c", os.devnull,
                           str(tmp_path / "test_grouped.py")], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=180)
    ran = re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED test_grouped.py::test_member\[\d\]@shared", proc.stdout)
    assert len(ran) == 6 and len(set(ran)) == 1, proc.stdout + proc.stderr


WRITES = '''
import os

def test_writes_a_file(tmp_path):
    (tmp_path / "run").write_bytes(b"x" * 4096)
    with open(os.environ["SEEN"], "w") as f:
        f.write(str(tmp_path))
'''


def test_a_passed_tests_temporary_files_are_gone_when_it_ends(tmp_path: Path) -> None:
    """With the project's pytest settings a passed test's tmp_path is removed (tmp_path_retention_policy):
    a CI machine's disk holds only what the running tests hold, not every run folder of the session."""
    (tmp_path / "test_writes.py").write_text(WRITES)
    seen = tmp_path / "seen"
    env = {**os.environ, "SEEN": str(seen)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-c",
                           str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path / "test_writes.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = Path(seen.read_text())
    assert written.name.startswith("test_writes_a_file") and not written.exists()
