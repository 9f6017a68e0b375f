"""The container's ``pip install .`` of our script-mode directories works offline, whatever its pip.

sagemaker-containers (inside the SageMaker XGBoost image) writes a ``setup.py`` into a code directory that
has none (``_modules.prepare``) and runs ``python -m pip install .`` there before training (the
``sourcedir.tar.gz``) and before serving (the model's ``code/``), with no network under network isolation
or in VPC mode without a NAT. The image's pip and ``wheel`` are not published, so this runs the real
``prepare`` from the container environment, then ``pip install .`` with no package index and no pip
configuration, in throwaway venvs holding pip 26.3, pip 25.2, and pip 25.2 with ``wheel``
(``make pipcheck-setup``, from the registry). Both directories ship a ``pyproject.toml`` with an in-tree
backend (training_src/predmaint_build_backend.py) and install everywhere; the same directory without it
is what sagemaker-containers' generated ``setup.py`` makes of it, and pip 26.3 refuses that offline
(the reproduction, so a machine whose pip finds setuptools somewhere cannot make this pass by accident).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from stacks import assets

REPO = Path(__file__).resolve().parents[2]
VENVS = REPO / ".venv-pipcheck"
CONTAINER_PYTHON = REPO / ".venv-container" / "bin" / "python"
PIPS = ("pip26", "pip25", "pip25-wheel")


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    # no index, and no pip configuration file (this machine's would point pip at local wheel folders)
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _python(venv: str) -> Path:
    python = VENVS / venv / "bin" / "python"
    if not python.exists() or not CONTAINER_PYTHON.exists():
        pytest.fail(f"{python} or {CONTAINER_PYTHON} missing: run `make pipcheck-setup container-setup`")
    return python


def _container_install(code: Path, venv: str) -> subprocess.CompletedProcess:
    """What sagemaker-containers does with a code directory: its own ``prepare``, then ``pip install .``."""
    prepared = subprocess.run([str(CONTAINER_PYTHON), "-c", "import sys; from sagemaker_containers import _modules; "
                               "_modules.prepare(sys.argv[1], 'inference')", str(code)],
                              capture_output=True, text=True, timeout=120)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    python = _python(venv)
    done = subprocess.run([str(python), "-m", "pip", "install", "."], cwd=code, env=_offline_env(),
                          capture_output=True, text=True, timeout=300)
    if done.returncode == 0:  # leave the venv as it was for the next directory
        subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "predmaint_code"], env=_offline_env(),
                       capture_output=True, check=True, timeout=120)
    return done


def _model_code(model_dir: Path, tmp_path: Path) -> Path:
    code = tmp_path / "code"
    shutil.copytree(model_dir / "code", code)
    return code


def _training_source(tmp_path: Path) -> Path:
    code = tmp_path / "sourcedir"
    with tarfile.open(fileobj=io.BytesIO(assets.source_tarball_bytes(assets.training_source_files()))) as tar:
        tar.extractall(code, filter="data")
    return code


@pytest.mark.parametrize("venv", PIPS)
@pytest.mark.parametrize("directory", ["model code/", "training sourcedir"])
def test_the_container_installs_our_code_offline_with_any_pip(model_dir: Path, tmp_path: Path, venv: str,
                                                              directory: str) -> None:
    code = _model_code(model_dir, tmp_path) if directory == "model code/" else _training_source(tmp_path)
    assert (code / "pyproject.toml").is_file() and (code / "training_src" / "predmaint_build_backend.py").is_file()
    done = _container_install(code, venv)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Successfully installed predmaint_code-1.0.0" in done.stdout


def test_without_the_backend_pip_26_cannot_install_the_generated_setup_py_offline(model_dir: Path,
                                                                                   tmp_path: Path) -> None:
    code = _model_code(model_dir, tmp_path)
    for name in ("pyproject.toml", "training_src/predmaint_build_backend.py"):
        (code / name).unlink()
    done = _container_install(code, "pip26")
    assert done.returncode != 0
    assert "installing build dependencies" in (done.stdout + done.stderr)
