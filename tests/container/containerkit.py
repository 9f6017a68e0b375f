"""Helpers for running the project's code in the SageMaker XGBoost container's Python environment.

``.venv-container`` (``make container-setup``) holds the container's pinned Python packages;
``sm_xgboost.py`` (beside this file) rebuilds the container's serving and training entry paths from
sagemaker-containers. Jobs that need the container's absolute paths (``/opt/ml/...``) and host names
(``algo-1``, ``algo-2``) run in a private mount namespace (``unshare --mount``) where a temporary
folder is mounted on ``/opt`` and a hosts file naming the hosts on ``/etc/hosts``: the job sees the
container's layout, nothing outside the namespace changes, and the commands run exactly as given.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV = REPO / ".venv-container"
PYTHON = VENV / "bin" / "python"
SM_XGBOOST = HERE / "sm_xgboost.py"
#: offline, like a network-isolated job: pip builds the code directory with the environment's setuptools
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def container_python() -> Path:
    """The container environment's interpreter; fails in CI (make test builds it), else skips."""
    if not PYTHON.is_file():
        message = f"{VENV} is missing: run `make container-setup`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return PYTHON


def environment(site: Path, **extra: str) -> dict[str, str]:
    """A container process's environment: the container's interpreter first on PATH, nothing of the
    project's virtualenv, pip offline and installing into ``site`` (this container's own
    site-packages layer, so parallel containers never write to the shared environment)."""
    site.mkdir(parents=True, exist_ok=True)  # like a real site-packages, there before the interpreter starts
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith(("SM_", "SAGEMAKER_"))}
    env.update(OFFLINE_PIP)
    env.update(PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}", PIP_TARGET=str(site), PYTHONPATH=str(site),
               PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_namespace(opt: Path, hosts_file: Path, command: list[str]) -> list[str]:
    """``command`` in a private mount namespace with ``opt`` mounted on /opt and ``hosts_file`` on
    /etc/hosts (root, or an unprivileged user namespace mapped to root)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to give a job the container's /opt/ml layout")
    script = 'mount --bind "$1" /opt && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"'
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", "--mount", "--propagation", "private", *user, "sh", "-c", script, "container", str(opt),
            str(hosts_file), *command]


def hosts_file(path: Path, names: list[str]) -> Path:
    """This machine's /etc/hosts plus ``names`` on 127.0.0.1 (the job's hosts, e.g. algo-1, algo-2)."""
    path.write_text(Path("/etc/hosts").read_text() + f"\n127.0.0.1 {' '.join(names)}\n")
    return path


def write_json(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def run(command: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd="/")


PY = sys.executable
