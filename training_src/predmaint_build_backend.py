"""The PEP 517 build backend of the code directories SageMaker's containers ``pip install``.

sagemaker-containers (the SageMaker XGBoost container's glue) runs ``python -m pip install .`` in a
script-mode code directory before it trains (the ``sourcedir.tar.gz`` of training_src) or serves (the
model's ``code/``), and writes a ``setup.py`` there first when the directory has none
(``_modules.prepare``/``install``). Which pip and whether ``wheel`` are in the image is not published,
and the jobs and the endpoint may have no network (network isolation, VPC mode without a NAT). A
``setup.py`` project then cannot be installed by every pip: pip 26 builds it in an isolated environment
that must download setuptools (no index: "Failed to build ... when installing build dependencies"), pip
25.2 only with ``wheel`` installed.

So both directories ship a ``pyproject.toml`` (``PYPROJECT_TOML``) naming this module (shipped in the
directory's ``training_src/``) as an in-tree backend with no build requirements: pip's isolated build environment needs nothing
downloaded, and the wheel is made here with the standard library alone. Any pip that implements PEP 517
in-tree backends (``backend-path``, pip >= 20) installs the directory offline, with or without
``wheel``, setuptools or build isolation (tests/container/test_offline_install.py runs pip 26.3 and 25.2
with and without ``wheel``, no index).

The wheel holds what the generated ``setup.py`` installed (``packages=['']``: every module and package of
the directory at the top level of site-packages: the entry module and the ``training_src`` package), so
imports behave as before; the container imports the entry point from the directory itself either way.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path

NAME, VERSION = "predmaint_code", "1.0.0"
#: the pyproject.toml of a code directory (written by train.py's write_model and stacks/assets.py)
PYPROJECT_TOML = """\
# pip installs this directory with the in-tree backend beside it (standard library only, no download):
# see predmaint_build_backend.py
[build-system]
requires = []
build-backend = "predmaint_build_backend"
backend-path = ["training_src"]
"""
#: the entry modules at the top of a code directory (``sourcedir.tar.gz``: train.py, written by stacks/assets.py;
#: the model's ``code/``: inference.py, written by train.py's write_model). The code itself ships beside them as
#: the ``training_src`` package, so it imports as ``training_src.<module>`` there as in the repository.
ENTRY_MODULES = {
    "train.py": ('"""sagemaker_program=train.py (``python -m train``): runs training_src/train.py, shipped beside '
                 'this file."""\nimport sys\n\nfrom training_src.threads import arrow_system_pool_at_load\n\n'
                 'arrow_system_pool_at_load()  # before training_src.train imports pandas, which loads pyarrow\n'
                 'from training_src.train import main  # noqa: E402\n\n'
                 'if __name__ == "__main__":\n    sys.exit(main())\n'),
    "inference.py": ('"""SAGEMAKER_PROGRAM=inference.py: the hooks of training_src/inference.py, shipped beside '
                     'this file."""\nfrom training_src.inference import handle, input_fn, model_fn, output_fn, '
                     'predict_fn  # noqa: F401\n'),
}
#: files of the directory that are build inputs or outputs, not part of what is installed
_BUILD_FILES = {"pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", Path(__file__).name}
_SKIP_DIRS = {"__pycache__", "build", "dist", ".git"}
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # zip's earliest: reproducible wheels
_DIST_INFO = f"{NAME}-{VERSION}.dist-info"
_METADATA = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\nSummary: predmaint script-mode code\n"
_WHEEL = "Wheel-Version: 1.0\nGenerator: predmaint_build_backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def project_files(root: Path) -> list[Path]:
    """What the wheel installs: every file under ``root`` but build files, caches and metadata dirs."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(p in _SKIP_DIRS or p.endswith((".egg-info", ".dist-info")) for p in rel.parts):
            continue
        if (len(rel.parts) == 1 and rel.name in _BUILD_FILES) or path.suffix in (".pyc", ".pyo"):
            continue
        out.append(path)
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _add(zf: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


# ---- PEP 517 hooks ----
def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: dict | None = None) -> str:
    target = Path(metadata_directory) / _DIST_INFO
    target.mkdir(parents=True, exist_ok=True)
    (target / "METADATA").write_text(_METADATA)
    (target / "WHEEL").write_text(_WHEEL)
    return _DIST_INFO


def build_wheel(wheel_directory: str, config_settings: dict | None = None,
                metadata_directory: str | None = None) -> str:
    """Write ``predmaint_code-1.0.0-py3-none-any.whl`` of the current directory; return its file name."""
    root = Path.cwd()
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(Path(wheel_directory) / name, "w") as zf:
        for path in project_files(root):
            rel, data = path.relative_to(root).as_posix(), path.read_bytes()
            _add(zf, rel, data, 0o755 if os.access(path, os.X_OK) else 0o644)
            record.append(_record_line(rel, data))
        for meta, text in (("METADATA", _METADATA), ("WHEEL", _WHEEL)):
            _add(zf, f"{_DIST_INFO}/{meta}", text.encode())
            record.append(_record_line(f"{_DIST_INFO}/{meta}", text.encode()))
        record.append(f"{_DIST_INFO}/RECORD,,")
        _add(zf, f"{_DIST_INFO}/RECORD", ("\n".join(record) + "\n").encode())
    return name
