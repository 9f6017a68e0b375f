"""Deterministic staging of code assets at synth time.

There is ONE copy of the shared code (``training_src/``), and it ships as the ``training_src`` package
everywhere, so it imports as ``training_src.<module>`` in the repository, the Lambda functions and the
SageMaker containers alike. At synth time the modules the Lambdas share are staged as
``training_src/...`` beside each Lambda handler, with the functions' pinned dependencies
(``lambda_dependency_files``), and the whole package is packed into the ``sourcedir.tar.gz`` that
SageMaker's script mode downloads, beside the entry module ``train.py``. Staging directories are
content-addressed (``build/<kind>/<sha256 of the content>``) and created atomically, so parallel
synths (pytest-xdist, ``npx cdk synth`` in a test) never race, and asset hashes only change when
the content does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINING_SRC = REPO_ROOT / "training_src"
LAMBDA_SRC = REPO_ROOT / "lambda"
BUILD_DIR = Path(os.environ.get("PREDMAINT_BUILD_DIR", REPO_ROOT / "build"))

#: shared modules every Lambda gets (pure Python, no third-party imports at import time)
LAMBDA_SHARED_MODULES = ("profiles.py", "promotion.py", "search_space.py")
#: shared packages every Lambda gets: the candidate algorithms, whose ranges ``search_space`` reads
LAMBDA_SHARED_PACKAGES = ("candidates",)
#: packages only some functions get: the score Lambda runs the stream core (stdlib only when imported)
LAMBDA_FUNCTION_PACKAGES = {"score": ("stream",)}
_SKIP_DIRS = {"__pycache__", "tests", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def _files(root: Path, rel_prefix: str = "") -> dict[str, bytes]:
    """``{relative path: bytes}`` of the source files under ``root`` (sorted, no caches or tests)."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(part in _SKIP_DIRS for part in rel.parts):
            continue
        if path.name.endswith(_SKIP_SUFFIXES) or path.name.startswith("test_") or path.name == "conftest.py":
            continue
        out[rel_prefix + rel.as_posix()] = path.read_bytes()
    return out


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def _materialise(kind: str, files: dict[str, bytes], writer) -> Path:
    """Create ``build/<kind>/<digest>`` once, atomically; ``writer(tmpdir)`` fills it."""
    final = BUILD_DIR / kind / _digest(files)
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=final.parent))
    try:
        writer(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race; its content is identical
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def lambda_bundle_files(name: str) -> dict[str, bytes]:
    """The files of one Lambda's deployment package: its folder plus the shared modules, under ``training_src/``."""
    folder = LAMBDA_SRC / name
    if not (folder / "handler.py").is_file():
        raise FileNotFoundError(f"lambda/{name}/handler.py not found")
    files = {k: v for k, v in _files(folder).items() if k != "requirements.txt"}
    for module in ("__init__.py", *LAMBDA_SHARED_MODULES):
        files[f"training_src/{module}"] = (TRAINING_SRC / module).read_bytes()
    files.update(_files(TRAINING_SRC / "profiles", "training_src/profiles/"))
    for package in (*LAMBDA_SHARED_PACKAGES, *LAMBDA_FUNCTION_PACKAGES.get(name, ())):
        files.update({k: v for k, v in _files(TRAINING_SRC / package, f"training_src/{package}/").items()
                      if k.endswith(".py")})
    return files


#: the functions' pinned dependencies (Powertools with its tracer extra), installed for their runtime by
#: ``make lambda-deps`` into ``LAMBDA_DEPS / "site"``; ``LAMBDA_DEPS / "requirements.sha256"`` says from
#: which lambda/requirements-bundle.txt
LAMBDA_DEPS_REQUIREMENTS = LAMBDA_SRC / "requirements-bundle.txt"
LAMBDA_DEPS = BUILD_DIR / "lambda-deps"


class MissingDependenciesError(RuntimeError):
    """The functions' dependency directory is missing or was built from other pins."""


def lambda_dependency_files() -> dict[str, bytes]:
    """``{relative path: bytes}`` of the pinned dependencies every function's package carries.

    Raises ``MissingDependenciesError`` (naming ``make lambda-deps``) when they were not built, or were
    built from another ``lambda/requirements-bundle.txt`` than the current one."""
    want = hashlib.sha256(LAMBDA_DEPS_REQUIREMENTS.read_bytes()).hexdigest()
    stamp = LAMBDA_DEPS / "requirements.sha256"
    have = stamp.read_text().strip() if stamp.is_file() else None
    if have != want:
        why = "not built" if have is None else "built from other pins"
        raise MissingDependenciesError(f"{LAMBDA_DEPS}: the Lambda functions' dependencies are {why}: "
                                       "run `make lambda-deps` (lambda/requirements-bundle.txt)")
    site = LAMBDA_DEPS / "site"
    out: dict[str, bytes] = {}
    for path in sorted(site.rglob("*")):
        rel = path.relative_to(site)
        if path.is_file() and rel.parts[0] != "bin" and "__pycache__" not in rel.parts \
                and not path.name.endswith(_SKIP_SUFFIXES):
            out[rel.as_posix()] = path.read_bytes()
    return out


def stage_lambda(name: str) -> Path:
    """Stage ``lambda/<name>`` + shared modules + the pinned dependencies into a content-addressed
    directory; return it."""
    files = {**lambda_dependency_files(), **lambda_bundle_files(name)}

    def write(tmp: Path) -> None:
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    return _materialise(f"lambda-{name}", files, write)


def source_tarball_bytes(files: dict[str, bytes]) -> bytes:
    """A byte-for-byte reproducible ``sourcedir.tar.gz``.

    Layout: the ``training_src`` package and the entry module ``train.py`` at the root (script mode runs
    ``python -m train`` in the extracted directory, which runs ``training_src.train``). No links (an old
    layout had a ``training_src -> .`` symlink): the SageMaker XGBoost container ``pip install``s this directory before every training
    job (sagemaker-containers' ``run_module``), and setuptools follows such a loop ~40 levels deep
    while the build copies into ``build/`` below it, which made the install fail now and then
    (tests/infra/test_container_jobs.py) and cost ~15 s per job when it passed.
    """
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(n).parent) for n in files if "/" in n})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def training_source_files() -> dict[str, bytes]:
    """The files of ``sourcedir.tar.gz``: ``training_src/``, the entry module ``train.py`` and the
    ``pyproject.toml`` that makes the container's ``pip install .`` of it work offline with any pip
    (training_src/predmaint_build_backend.py)."""
    from training_src.predmaint_build_backend import ENTRY_MODULES, PYPROJECT_TOML

    return {**_files(TRAINING_SRC, "training_src/"), "train.py": ENTRY_MODULES["train.py"].encode(),
            "pyproject.toml": PYPROJECT_TOML.encode()}


def stage_training_source() -> Path:
    """Stage ``training_src/`` as ``build/sourcedir/<digest>/sourcedir.tar.gz``; return the file path."""
    files = training_source_files()

    def write(tmp: Path) -> None:
        (tmp / "sourcedir.tar.gz").write_bytes(source_tarball_bytes(files))

    return _materialise("sourcedir", files, write) / "sourcedir.tar.gz"
