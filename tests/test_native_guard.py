"""The guard in tests/conftest.py: a native-code test that skips where a C compiler is on PATH fails
(a build or load error must not hide as a skip); elsewhere it stays a skip. Run as a real pytest session."""

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


def _session(tmp_path: Path, path_dirs: list[str]) -> dict[str, str]:
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {**os.environ, "PATH": os.pathsep.join(path_dirs), "PYTHONPATH": str(REPO / "tests")}
    env.pop("CC", None)
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
