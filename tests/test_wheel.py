"""The package installs: .ci/wheel-check (`make wheel-check`) builds a wheel from this checkout, installs it
with its declared dependencies into a fresh venv, and runs the installed `predmaint --version`, `--help`
and a one-trial FD001 run from a temporary folder and home."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_installs_and_runs_in_a_fresh_venv(data_dir: Path) -> None:
    python = shutil.which("python3.11") or sys.executable
    proc = subprocess.run([str(REPO / ".ci" / "wheel-check"), python], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PREDMAINT_DATA_DIR": str(data_dir)}, timeout=1800)
    out = proc.stdout.splitlines()
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert out[-1] == "wheel-check: ok" and any(line.startswith("predmaint 0") for line in out), proc.stdout


def test_declared_dependencies_admit_the_tested_pins() -> None:
    """Every `[project].dependencies` range holds requirements.txt's pin: the wheel installs what the
    suite tests with (or newer within the range), and a re-lock that leaves a range fails here."""
    import re
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {canonicalize_name(n): v for n, v in
            re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M)}
    deps = [Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    assert deps
    outside = [f"{d} (pinned {pins.get(canonicalize_name(d.name))})" for d in deps
               if canonicalize_name(d.name) not in pins or pins[canonicalize_name(d.name)] not in d.specifier]
    assert not outside, f"ranges that do not hold requirements.txt's pin: {outside}"
