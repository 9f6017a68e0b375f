"""Building and loading the serving hot path's C libraries (ctypes; libc/libm only, no Python headers).

Two libraries, each named by the hash of its sources (so a changed source is never served by an
old build):

- ``forest``:  ``forest.c``, the compiled tree walkers (``predictors.CompiledForest`` for xgboost,
  ``predictors.CompiledTrees`` for the ``hgb`` candidate)
- ``request``: ``request.c`` (the JSON reader) + ``features.c`` (the feature kernel), the compiled
  request reader (``reader.RequestReader``) and fleet scoring's feature entry

``train.py`` builds them into the artifact's ``code/predmaint_serving/`` when the training host has a C
compiler; otherwise the first model load builds them into the user's cache. Best effort: every
failure means "serve with the Python path and NumPy", which gives the same answers.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: library -> its C sources (compiled together); headers count towards the library's hash
LIBRARIES: dict[str, tuple[str, ...]] = {"forest": ("forest.c",), "request": ("request.c", "features.c")}
HEADERS = ("features.h",)
SOURCES = tuple(s for sources in LIBRARIES.values() for s in sources) + HEADERS


def library_name(library: str, here: Path = HERE) -> str | None:
    """``<library>-<hash of its sources and headers>.so``; None if a source is missing."""
    h = hashlib.sha256()
    for name in (*LIBRARIES[library], *HEADERS):
        src = here / name
        if not src.is_file():
            return None
        h.update(name.encode() + b"\0" + src.read_bytes())
    return f"{library}-{h.hexdigest()[:16]}.so"


def cache_dir() -> Path:
    # per user (never a shared temp directory: a planted library would be loaded and run)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "predmaint"


def build_native_libraries(directory: str | os.PathLike) -> list[Path]:
    """Put every compiled library into ``directory`` (compiled once per source version into the
    user's cache, then copied); the ones built, none without a C compiler."""
    return [p for p in (_build(lib, Path(directory)) for lib in LIBRARIES) if p is not None]


def _build(library: str, directory: Path) -> Path | None:
    name = library_name(library)
    if name is None:
        return None
    target = directory / name
    if target.is_file():
        return target
    cached = cache_dir() / name
    try:
        if not cached.is_file() and not _compile(library, cached):
            return None
        if cached != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cached, target)
        return target
    except OSError:
        return None


def _compile(library: str, target: Path) -> bool:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return False
    sources = [str(HERE / s) for s in LIBRARIES[library]]
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{library}-", suffix=".so", dir=target.parent)
        os.close(fd)
        # -O2 without -ffast-math and without contracting a*b+c into one rounding: the results must
        # stay bit-identical to xgboost's float32 sums and NumPy's float64 arithmetic
        proc = subprocess.run([cc, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", tmp, *sources, "-lm"],
                              capture_output=True, timeout=60)
        if proc.returncode != 0:
            return False
        os.replace(tmp, target)  # atomic: concurrent workers never load a half-written file
        tmp = None
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def load_library(library: str) -> Any:
    """ctypes handle of a library: the artifact's copy, a cached build, or a fresh build; None."""
    name = library_name(library)
    if name is None:
        return None
    cache = cache_dir()
    for path in (HERE / name, cache / name, None):
        if path is None:
            path = _build(library, cache)
            if path is None:
                return None
        if not path.is_file():
            continue
        try:
            return ctypes.CDLL(str(path))
        except OSError:
            continue
    return None


def _function(library: str, symbol: str, argtypes: list[Any]) -> Any:
    """``symbol`` of ``library`` typed with ``argtypes`` (returning nothing), or None."""
    lib = load_library(library)
    if lib is None or not hasattr(lib, symbol):
        return None
    fn = getattr(lib, symbol)
    fn.argtypes, fn.restype = argtypes, None
    return fn


def forest_function() -> Any:
    """``predmaint_forest_predict`` (forest.c, xgboost trees) with its signature, or None."""
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    return _function("forest", "predmaint_forest_predict", [p, i64, i64, p, p, i64, ctypes.c_float, ctypes.c_int32, p])


def hgb_function() -> Any:
    """``predmaint_hgb_margin`` (forest.c, the ``hgb`` candidate's trees) with its signature, or None."""
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    return _function("forest", "predmaint_hgb_margin", [p, i64, i64, p, p, i64, ctypes.c_double, p])


def bind_request_functions(lib: Any) -> tuple[Any, Any]:
    """``(predmaint_read_request, predmaint_features)`` of a loaded request library, typed."""
    fn, batch = lib.predmaint_read_request, lib.predmaint_features
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [ctypes.c_char_p, i64, p, p, p, p]
    batch.argtypes = [p, p, i64, p, p]
    fn.restype = batch.restype = ctypes.c_int
    return fn, batch


def bind_life_function(lib: Any) -> Any:
    """``predmaint_read_request_life`` of a loaded request library (the request reader with life
    summaries and horizons: ``predmaint_read_request``'s arguments, then per-asset life flags and
    summaries, then the horizon flags and values: the request's, then each asset's, then each asset's
    number of readings), typed; None if the library lacks it."""
    if not hasattr(lib, "predmaint_read_request_life"):
        return None
    fn, p, i64 = lib.predmaint_read_request_life, ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [ctypes.c_char_p, i64, p, p, p, p, p, p, p, p, p]
    fn.restype = ctypes.c_int
    return fn


def request_life_function() -> Any:
    """The request library's reader with life summaries (see ``bind_life_function``), or None."""
    lib = load_library("request")
    return None if lib is None else bind_life_function(lib)


def request_fields() -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The keys of a body and of an instance the request library knows (``request.c``'s allow-lists
    ``REQUEST_FIELDS``, ``INSTANCE_FIELDS``), or None without the library."""
    lib = load_library("request")
    if lib is None or not hasattr(lib, "predmaint_request_fields"):
        return None
    lists = []
    for symbol in ("predmaint_request_fields", "predmaint_instance_fields"):
        fn = getattr(lib, symbol)
        fn.argtypes, fn.restype = [], ctypes.c_char_p
        lists.append(tuple(fn().decode("ascii").split(",")))
    return lists[0], lists[1]


def request_functions() -> tuple[Any, Any] | None:
    """The request library's two entry points (see ``bind_request_functions``), or None."""
    lib = load_library("request")
    if lib is None or not hasattr(lib, "predmaint_read_request"):
        return None
    return bind_request_functions(lib)
