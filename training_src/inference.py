"""Inference handlers: the code that runs in the SageMaker XGBoost container and the local server.

The four SageMaker functions (``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``) implement
the endpoint contract in DESIGN.md. ``handle`` chains them and maps every bad input to a 4xx JSON
error (never a 500): the local server calls it directly; in the SageMaker container ``transform_fn``
(which the container prefers over the four functions when present) calls it and returns a response
with the right status code.

Requests (regression profiles)::

    {"instances": [{"asset_id": "engine-7", "readings": [{"cycle": 1, "setting_1": ..., ...}]}]}

Readings may come in any order; they are sorted by time and only the trailing history the feature
spec needs is used. Classification profiles take one row of the profile's columns per instance.
``explain=true`` (header ``X-Amzn-SageMaker-Custom-Attributes`` locally, or ``"explain": true`` in
the body, which also works in the container) adds the top feature contributions per prediction.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import operator
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

try:
    from . import features as F
except ImportError:  # SageMaker container / local server: code/ is on sys.path
    import features as F

def _lenient_loads(body: bytes | str) -> Any:
    """The stdlib parser, which reads NaN, Infinity and 1e999 (as inf) instead of refusing them.

    Used only after the strict parser refused a body, so validation can name the field holding the
    non-finite number (``instances[0].readings[3].sensor_2: must be a finite number``).
    """
    return json.loads(body)


try:  # orjson parses ~5x faster; the SageMaker container may not have it
    import orjson

    def _loads(body: bytes | str) -> Any:
        return orjson.loads(body)

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
except ImportError:  # pragma: no cover - exercised in the container
    def _reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def _loads(body: bytes | str) -> Any:
        # 1e999 parses to inf in the stdlib: refuse it like orjson does
        return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)

    def _finite_float(text: str) -> float:
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(f"number {text} is out of range")
        return v

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=float).encode()

MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_INSTANCES = int(os.environ.get("PREDMAINT_MAX_INSTANCES", "1000"))
MAX_READINGS = int(os.environ.get("PREDMAINT_MAX_READINGS", "10000"))
TOP_CONTRIBUTIONS = 5
JSON = "application/json"


class InferenceError(Exception):
    """A request the endpoint refuses; ``status_code`` is the HTTP status (4xx)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _bad(message: str) -> InferenceError:
    return InferenceError(400, message)


@dataclass
class Model:
    """A loaded model: predictor, fitted feature spec and metadata."""

    spec: F.FeatureSpec
    meta: dict[str, Any]
    booster: Any = None  # xgboost.Booster
    linear: Any = None  # train.LinearModel-compatible JSON weights
    version: str = ""
    required: list[str] = field(default_factory=list)
    threshold: float = 0.5
    getter: Any = None  # operator.itemgetter(*required): the fast request parser (window profiles)
    forest: Any = None  # _Forest: NumPy evaluation of the booster's trees for small requests
    compiled: Any = None  # _CompiledForest: forest.c via ctypes, every request size
    reader: Any = None  # _RequestReader: request.c via ctypes, body -> features (window profiles)

    @property
    def is_regression(self) -> bool:
        return self.spec.task == "rul_regression"


class _Linear:
    def __init__(self, doc: dict[str, Any]):
        self.mean = np.asarray(doc["mean"])
        self.scale = np.asarray(doc["scale"])
        self.coef = np.asarray(doc["coef"])
        self.intercept = float(doc["intercept"])
        self.logistic = doc["task"] == "failure_classification"

    def margin_contribs(self, X: np.ndarray) -> np.ndarray:
        return np.hstack([(X - self.mean) / self.scale * self.coef, np.full((len(X), 1), self.intercept)])

    def predict(self, X: np.ndarray) -> np.ndarray:
        m = ((X - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-m)) if self.logistic else m


class _Forest:
    """The booster's trees as padded complete binary trees in NumPy arrays, for small requests.

    Why: xgboost's ``inplace_predict`` has a fixed cost of ~0.1-0.4 ms per call whatever the row
    count, more than everything else in a one-asset request. Walking all trees at once, one tree
    level per step (a few NumPy gathers over ``n_trees`` elements), costs ~30 us for one row.

    Exactness: xgboost compares ``float32(x) < float32(split)`` (missing values take the default
    branch) and adds the leaf values to the base margin in float32, tree by tree; this does the
    same, so predictions are bit-identical in practice. ``from_booster`` verifies that on random
    rows and returns None (use the booster) if they differ by more than 1e-5, or if the model is
    not a plain gbtree regression/binary-logistic ensemble or is too deep to pad. Nothing is
    stored in the artifact: the arrays are built from the booster at load time, so every artifact
    (and the SageMaker XGBoost container, which has NumPy) gets it.
    """

    MAX_DEPTH = 12  # 2**12 leaves per tree padded: ~4k nodes per tree is still small
    MAX_ROWS = 16  # above this, xgboost's blocked C++ predictor is faster

    def __init__(self, feat: np.ndarray, thresh: np.ndarray, default_left: np.ndarray, leaves: np.ndarray,
                 depth: int, base_margin: float, logistic: bool):
        """Padded trees: node ``s`` of a tree has children ``2s+1`` (x < split) and ``2s+2``."""
        # (n_trees, 2**depth - 1) inner nodes and (n_trees, 2**depth) leaves, stored flat
        self.n_trees, self.n_inner = feat.shape
        self.feat, self.thresh = feat.ravel(), thresh.ravel()
        self.default_left, self.leaves = default_left.ravel(), leaves.ravel()
        self.depth, self.base_margin, self.logistic = depth, np.float32(base_margin), logistic
        self._tree_base = (np.arange(self.n_trees) * self.n_inner)[None, :]
        self._leaf_base = (np.arange(self.n_trees) * leaves.shape[1])[None, :]

    @classmethod
    def from_booster(cls, booster: Any) -> _Forest | None:
        """Build from an xgboost Booster; None when the model is unsupported or fails the self-check."""
        return _checked_walker(booster, cls._pad)

    @classmethod
    def _pad(cls, trees: list[dict[str, Any]], base: float, logistic: bool) -> _Forest | None:
        def depth_of(t: dict[str, Any]) -> int:
            left, right = t["left_children"], t["right_children"]
            best, stack = 0, [(0, 0)]
            while stack:
                node, d = stack.pop()
                if left[node] == -1:
                    best = max(best, d)
                else:
                    stack += [(left[node], d + 1), (right[node], d + 1)]
            return best

        depth = max(1, max(depth_of(t) for t in trees))
        if depth > cls.MAX_DEPTH:
            return None
        n_inner, n_leaves = 2 ** depth - 1, 2 ** depth
        T = len(trees)
        feat = np.zeros((T, n_inner), dtype=np.intp)
        # padding below an early leaf: NaN split, and "x >= NaN" is false for every x, so go left
        thresh = np.full((T, n_inner), np.nan, dtype=np.float32)
        dleft = np.ones((T, n_inner), dtype=bool)
        leaves = np.zeros((T, n_leaves), dtype=np.float32)
        for k, t in enumerate(trees):
            left, right = t["left_children"], t["right_children"]
            split, cond, dl = t["split_indices"], t["split_conditions"], t["default_left"]
            stack = [(0, 0)]  # (xgboost node id, slot in the complete tree)
            while stack:
                node, slot = stack.pop()
                if left[node] == -1:  # a leaf above the bottom: every padded leaf below it holds it
                    if slot >= n_inner:
                        leaves[k, slot - n_inner] = cond[node]
                    else:
                        lo = slot
                        while lo < n_inner:
                            lo = 2 * lo + 1
                        span = 2 ** (depth - int(math.log2(slot + 1)))
                        leaves[k, lo - n_inner:lo - n_inner + span] = cond[node]
                    continue
                feat[k, slot], thresh[k, slot], dleft[k, slot] = split[node], cond[node], bool(dl[node])
                stack += [(left[node], 2 * slot + 1), (right[node], 2 * slot + 2)]
        return cls(feat, thresh, dleft, leaves, depth, base, logistic)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions (n,) float32 for X (n, n_features), like ``booster.inplace_predict``."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        n = len(X)
        slot = np.zeros((n, self.n_trees), dtype=np.intp)
        row = (np.arange(n) * X.shape[1])[:, None]
        flat_x = X.ravel()
        has_nan = bool(np.isnan(flat_x).any())
        for _ in range(self.depth):
            node = slot + self._tree_base
            x = flat_x[self.feat[node] + row]
            go_right = x >= self.thresh[node]  # == not (x < split) for every non-missing x
            if has_nan:
                go_right = np.where(np.isnan(x), ~self.default_left[node], go_right)
            slot = 2 * slot + 1 + go_right
        vals = self.leaves[slot - self.n_inner + self._leaf_base]
        # xgboost's order and precision: base margin first, then each tree in order, in float32
        acc = np.concatenate([np.full((n, 1), self.base_margin, dtype=np.float32), vals], axis=1)
        margin = np.cumsum(acc, axis=1, dtype=np.float32)[:, -1]
        if self.logistic:
            return (1.0 / (1.0 + np.exp(-margin.astype(np.float64)))).astype(np.float32)
        return margin


def _tree_arrays(booster: Any) -> tuple[list[dict[str, Any]], float, bool] | None:
    """The booster's trees (xgboost JSON dicts), base margin and whether the output is logistic.

    None unless the model is a plain gbtree regression or binary-logistic ensemble without
    categorical splits (the only kinds the NumPy and compiled walkers reproduce exactly).
    """
    try:
        doc = json.loads(bytes(booster.save_raw("json")))
        learner = doc["learner"]
        objective = learner["objective"]["name"]
        gb = learner["gradient_booster"]
        if gb["name"] != "gbtree" or objective not in ("reg:squarederror", "binary:logistic"):
            return None
        param = learner["learner_model_param"]
        if int(param.get("num_target", "1")) != 1 or int(param.get("num_class", "0")) > 1:
            return None
        base = float(str(param["base_score"]).strip("[]"))
        logistic = objective == "binary:logistic"
        if logistic:  # base_score is a probability; the trees add to its logit
            base = math.log(base / (1.0 - base))
        trees = gb["model"]["trees"]
        if not trees or any(t.get("categories_nodes") for t in trees):
            return None
        return trees, base, logistic
    except Exception:  # any surprise in the model format: the booster always works
        return None


def _checked_walker(booster: Any, build: Any) -> Any:
    """``build(trees, base_margin, logistic)`` from the booster's trees, kept only if it reproduces
    the booster (``_agrees_with``); None for unsupported models, a failed build or any surprise in
    the model format (the booster always works)."""
    parsed = _tree_arrays(booster)
    if parsed is None:
        return None
    try:
        walker = build(*parsed)
        return walker if walker is not None and _agrees_with(walker.predict, booster) else None
    except Exception:
        return None


def _agrees_with(predict: Any, booster: Any) -> bool:
    """Self-check of a tree walker against the booster on random rows (both branches of most splits
    get exercised at this scale, and every 7th row has a missing value)."""
    rng = np.random.default_rng(0)
    n_features = booster.num_features()
    X = rng.normal(0.0, 1.5, size=(64, n_features)).astype(np.float32)
    X[:, 0] = rng.uniform(1, 350, size=64)  # time-like first column
    X[::7, 1 % n_features] = np.nan  # the default-direction branches
    want = np.asarray(booster.inplace_predict(X), dtype=np.float64)
    got = np.asarray(predict(X), dtype=np.float64)
    return bool(np.all(np.abs(got - want) <= 1e-5 * np.maximum(1.0, np.abs(want))))


FOREST_SOURCE = "forest.c"  # the tree walker
REQUEST_SOURCE = "request.c"  # the request reader (JSON body -> feature matrix)
NATIVE_SOURCES = (FOREST_SOURCE, REQUEST_SOURCE)


def _library_name(source: str) -> str | None:
    src = Path(__file__).resolve().with_name(source)
    if not src.is_file():
        return None
    return f"{Path(source).stem}-{hashlib.sha256(src.read_bytes()).hexdigest()[:16]}.so"


def _cache_dir() -> Path:
    # per user (never a shared temp directory: a planted library would be loaded and run)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "predmaint"


def build_native_libraries(directory: str | os.PathLike) -> list[Path]:
    """Put the compiled ``forest.c`` and ``request.c`` into ``directory`` (each named by its
    source's hash); the ones built, none without a C compiler.

    Called when a model artifact is written (so the artifact carries the libraries; compiled once
    per source version into the user's cache, then copied) and, failing that, at load time with
    the cache as ``directory``. Best effort: every failure means "serve with NumPy".
    """
    return [p for p in (_build_library(src, Path(directory)) for src in NATIVE_SOURCES) if p is not None]


def _build_library(source: str, directory: Path) -> Path | None:
    name = _library_name(source)
    if name is None:
        return None
    target = directory / name
    if target.is_file():
        return target
    cached = _cache_dir() / name
    try:
        if not cached.is_file() and not _compile(source, cached):
            return None
        if cached != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cached, target)
        return target
    except OSError:
        return None


def _compile(source: str, target: Path) -> bool:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return False
    src = Path(__file__).resolve().with_name(source)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(source).stem}-", suffix=".so", dir=target.parent)
        os.close(fd)
        # -O2 without -ffast-math and without contracting a*b+c into one rounding: the results must
        # stay bit-identical to xgboost's float32 sums and NumPy's float64 arithmetic
        proc = subprocess.run([cc, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", tmp, str(src), "-lm"],
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


def _load_library(source: str) -> Any:
    """ctypes handle of a compiled source: the artifact's copy, a cached build, or a fresh build."""
    import ctypes

    name = _library_name(source)
    if name is None:
        return None
    here = Path(__file__).resolve().parent
    cache = _cache_dir()
    for path in (here / name, cache / name, None):
        if path is None:
            path = _build_library(source, cache)
            if path is None:
                return None
        if not path.is_file():
            continue
        try:
            return ctypes.CDLL(str(path))
        except OSError:
            continue
    return None


def _load_forest_function() -> Any:
    import ctypes

    lib = _load_library(FOREST_SOURCE)
    if lib is None or not hasattr(lib, "predmaint_forest_predict"):
        return None
    fn = lib.predmaint_forest_predict
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [p, i64, i64, p, p, i64, ctypes.c_float, ctypes.c_int32, p]
    fn.restype = None
    return fn


class _CompiledForest:
    """The booster's trees as flat node arrays walked by ``forest.c`` (see there for why and how).

    Identical results to xgboost (same float32 compares and summation order; verified at load on
    random rows, and on the whole FD001 test fleet in tests/perf). Used for every request size:
    a few microseconds per row, no fixed per-call cost beyond the ctypes call (~2 us).
    """

    NODE = np.dtype([("left", "<i4"), ("feature", "<u4"), ("value", "<f4")])  # forest.c's Node

    def __init__(self, fn: Any, trees: list[dict[str, Any]], base: float, logistic: bool, n_features: int):
        sizes = [len(t["left_children"]) for t in trees]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)

        def cat(key: str, dtype: Any, shift: bool = False) -> np.ndarray:
            parts = []
            for start, t in zip(starts, trees, strict=True):
                a = np.asarray(t[key], dtype=np.int64 if shift else dtype)
                if shift:  # child ids are per tree: make them global, leaves stay -1
                    a = np.where(a >= 0, a + start, -1)
                parts.append(a.astype(dtype))
            return np.ascontiguousarray(np.concatenate(parts))

        feature = cat("split_indices", np.int64)
        if feature.size and (feature.min() < 0 or feature.max() >= n_features):
            raise ValueError("split on a feature the model does not have")
        nodes = np.zeros(len(feature), dtype=self.NODE)
        left = cat("left_children", np.int32, shift=True)
        inner = left >= 0
        if not np.array_equal(cat("right_children", np.int32, shift=True)[inner], left[inner] + 1):
            raise ValueError("right child is not left + 1")  # xgboost's numbering; else use NumPy
        nodes["left"] = left
        feature = np.where(inner, feature, 0)  # forest.c reads a leaf's feature field harmlessly
        nodes["feature"] = feature.astype(np.uint32) | np.where(cat("default_left", bool), 0x80000000, 0).astype(np.uint32)
        nodes["value"] = cat("split_conditions", np.float32)
        self.nodes, self.roots = nodes, np.ascontiguousarray(starts)
        self.n_features, self.fn = n_features, fn
        self._static = (self.nodes.ctypes.data, self.roots.ctypes.data, len(trees),
                        float(np.float32(base)), int(logistic))

    @classmethod
    def from_booster(cls, booster: Any) -> _CompiledForest | None:
        """None without a C compiler/library, for unsupported models, or if the self-check fails."""

        def build(trees: list[dict[str, Any]], base: float, logistic: bool) -> _CompiledForest | None:
            fn = _load_forest_function()
            return None if fn is None else cls(fn, trees, base, logistic, booster.num_features())

        return _checked_walker(booster, build)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions (n,) float32 for X (n, n_features), like ``booster.inplace_predict``."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {X.shape}")
        out = np.empty(len(X), dtype=np.float32)
        self.fn(X.ctypes.data, len(X), self.n_features, *self._static, out.ctypes.data)
        return out


class _RequestReader:
    """``request.c`` via ctypes: a window-profile request body straight to its float32 feature
    matrix (see there for why and how), or None to let the Python path answer.

    Same answers as ``parse_instances`` + ``features_matrix`` (bit-identical: checked at load on
    synthetic requests built from the spec, and on the FD001 test fleet in tests/perf); it declines
    every request it is not sure about, so errors always come from the Python path.
    """

    STATS: ClassVar[dict[str, int]] = {"mean": 0, "std": 1, "slope": 2, "min": 3, "max": 4}

    def __init__(self, fn: Any, spec: F.FeatureSpec, required: list[str], batch: Any = None):
        import ctypes
        import threading

        i64, dbl = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_double)

        class Plan(ctypes.Structure):  # request.c's Plan, field for field
            _fields_ = [("n_cols", ctypes.c_int64), ("names", ctypes.c_char_p), ("name_end", i64),
                        ("max_instances", ctypes.c_int64), ("max_readings", ctypes.c_int64),
                        ("n_settings", ctypes.c_int64), ("setting_col", i64),
                        ("n_sensors", ctypes.c_int64), ("sensor_col", i64),
                        ("n_regimes", ctypes.c_int64), ("center", dbl), ("scale", dbl), ("centroids", dbl),
                        ("mean", dbl), ("std", dbl),
                        ("n_sizes", ctypes.c_int64), ("sizes", i64), ("n_stats", ctypes.c_int64), ("stats", i64),
                        ("n_spans", ctypes.c_int64), ("span_len", i64), ("ewm_weights", dbl),
                        ("time_feature", ctypes.c_int64), ("n_features", ctypes.c_int64)]

        encoded = [c.encode() for c in required]
        keep: list[np.ndarray] = []  # the arrays the plan points into live as long as the reader

        def ints(values: Any) -> Any:
            a = np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1))
            keep.append(a)
            return a.ctypes.data_as(i64)

        def doubles(values: Any) -> Any:
            a = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
            keep.append(a)
            return a.ctypes.data_as(dbl)

        weights = [F._ewm_weights(span) for span in spec.ewm_spans]
        self.names = b"".join(encoded)
        self.plan = Plan(
            len(required), self.names, ints(np.cumsum([len(e) for e in encoded])), MAX_INSTANCES, MAX_READINGS,
            len(spec.setting_columns), ints([required.index(c) for c in spec.setting_columns]),
            len(spec.sensors), ints([required.index(c) for c in spec.sensors]),
            spec.n_regimes, doubles(spec.settings_center), doubles(spec.settings_scale), doubles(spec.centroids),
            doubles(spec._mean), doubles(spec._std),
            len(spec.window_sizes), ints(spec.window_sizes),
            len(spec.window_stats), ints([self.STATS[st] for st in spec.window_stats]),
            len(weights), ints([len(w) for w in weights]), doubles(np.concatenate([np.zeros(0), *weights])),
            int(bool(spec.time_column)), len(spec.feature_names))
        self._keep = keep
        self._plan_address = ctypes.addressof(self.plan)
        self.fn, self.batch, self.n_features = fn, batch, len(spec.feature_names)
        self._local = threading.local()  # output buffers per thread (the container may use threads)

    @classmethod
    def for_model(cls, model: Model) -> _RequestReader | None:
        """None unless the model is a window profile request.c covers (no derived or categorical
        inputs, at least two sensors), the library loads, and it reproduces the Python path."""
        spec = model.spec
        if (model.getter is None or not spec.window_sizes or not spec.time_column or spec.derived
                or spec.categorical or len(spec.sensors) < 2 or len(spec.setting_columns) > 64
                or os.environ.get("PREDMAINT_NATIVE_REQUEST", "1") == "0"):
            return None
        try:
            import ctypes

            lib = _load_library(REQUEST_SOURCE)
            if lib is None:
                return None
            fn, batch = lib.predmaint_read_request, lib.predmaint_features
            p, i64 = ctypes.c_void_p, ctypes.c_int64
            fn.argtypes = [ctypes.c_char_p, i64, p, p, p, p]
            batch.argtypes = [p, p, i64, p, p]
            fn.restype = batch.restype = ctypes.c_int
            reader = cls(fn, spec, model.required, batch)
            return reader if reader.agrees_with_python(model) else None
        except Exception:  # any surprise: the Python path always works
            return None

    def read(self, body: bytes) -> tuple[list[Any], np.ndarray] | None:
        """(asset ids, X (n_assets, n_features) float32) for a request body, or None (declined)."""
        local = self._local
        if not hasattr(local, "X"):
            local.X = np.empty((MAX_INSTANCES, self.n_features), dtype=np.float32)
            local.ids = np.empty((MAX_INSTANCES, 3), dtype=np.int64)
            local.n = np.zeros(1, dtype=np.int64)
        rc = self.fn(body, len(body), self._plan_address, local.X.ctypes.data, local.ids.ctypes.data,
                     local.n.ctypes.data)
        if rc != 0:
            return None
        m = int(local.n[0])
        ids: list[Any] = []
        for i, (kind, a, b) in enumerate(local.ids[:m].tolist()):
            ids.append(i if kind == 0 else body[a:b].decode("ascii") if kind == 1 else int(body[a:b]))
        return ids, local.X[:m].copy()

    def features(self, values: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
        """Features (m, n_features) float32 of the last reading of each of m assets whose validated,
        time-ordered readings are the rows ``offsets[i]:offsets[i+1]`` of ``values`` (columns in
        ``model.required`` order); None if declined. For fleet scoring: equals
        ``features.transform_last(...).astype(float32)``; the GIL is released while it runs."""
        if self.batch is None:
            return None
        values = np.ascontiguousarray(values, dtype=np.float64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if (values.ndim != 2 or values.shape[1] != self.plan.n_cols or offsets.ndim != 1 or len(offsets) < 1
                or offsets[0] < 0 or offsets[-1] > len(values) or (np.diff(offsets) < 0).any()):
            raise ValueError(f"expected (n, {self.plan.n_cols}) values and offsets within them")
        X = np.empty((len(offsets) - 1, self.n_features), dtype=np.float32)
        rc = self.batch(values.ctypes.data, offsets.ctypes.data, len(X), self._plan_address, X.ctypes.data)
        return X if rc == 0 else None

    def agrees_with_python(self, model: Model) -> bool:
        """Self-check: synthetic requests drawn around the spec's own statistics (every regime,
        histories shorter and longer than every window) give bit-identical features both ways,
        and malformed ones are declined."""
        for body in _synthetic_requests(model.spec, model.required):
            got = self.read(body)
            doc = input_fn(body, JSON)
            req = parse_instances(doc, model)
            want = features_matrix(req, model)
            if got is None or not np.array_equal(got[1], want) or \
                    got[0] != [inst.get("asset_id", i) for i, inst in enumerate(doc["instances"])]:
                return False
            if self.batch is not None:  # the fleet-scoring entry on the same readings
                fleet = self.features(req.columns.matrix, req.offsets)
                if fleet is None or not np.array_equal(fleet, want):
                    return False
        bad = _synthetic_requests(model.spec, model.required, n_assets=1)[0].replace(b"[", b"[[", 1)
        return self.read(bad) is None


def _synthetic_requests(spec: F.FeatureSpec, required: list[str], n_assets: int = 0) -> list[bytes]:
    """Request bodies of plausible readings for ``spec`` (settings at its regime centroids, sensors
    around each regime's mean), with history lengths around every window size, one asset per body
    and all in one; ``n_assets=1``: one body with one asset of the longest length."""
    rng = np.random.default_rng(7)
    sizes = [w for w in spec.window_sizes if w] + [3 * s for s in spec.ewm_spans]
    lengths = sorted({1, 2, 3, *(w + d for w in sizes for d in (-1, 0, 1) if w + d > 0)})
    if n_assets == 1:
        lengths = [lengths[-1]]
    center, scale = np.asarray(spec.settings_center), np.asarray(spec.settings_scale)
    bodies = []
    instances = []
    for a, n in enumerate(lengths):
        t = np.cumsum(rng.choice([1.0, 1.0, 2.0, 0.5], size=n)) + rng.integers(0, 50)
        reg = rng.integers(0, spec.n_regimes, size=n)
        steady = rng.normal(size=len(spec.sensors) + 1)
        readings = []
        for i in range(n):
            r = {}
            for c in required:
                if c == spec.time_column:
                    r[c] = float(t[i])
                elif c in spec.setting_columns:
                    j = spec.setting_columns.index(c)
                    r[c] = float(center[j] + scale[j] * (spec.centroids[reg[i]][j] + rng.normal(0, 0.01)))
                else:
                    k = spec.sensors.index(c) if c in spec.sensors else -1
                    mu, sd = (spec._mean[reg[i], k], spec._std[reg[i], k]) if k >= 0 else (0.0, 1.0)
                    # every other asset holds its sensors constant: windows of equal values
                    # expose a summation order that differs from the batch code's (a mean off by
                    # an ulp gives a std or slope of 1e-17 instead of 0)
                    noise = steady[k] if a % 2 == 0 else rng.normal()
                    r[c] = round(float(mu + sd * noise), 4)
            r["note"] = [None, True, {"x": -0.5e-3}]  # a key the model does not use is skipped
            readings.append(r)
        inst: dict[str, Any] = {"readings": readings}
        if a % 3 == 1:
            inst["asset_id"] = f"engine-{a}"
        elif a % 3 == 2:
            inst["asset_id"] = -a
        instances.append(inst)
    # one asset per request (its windows are slices of one block) and all together (gathered)
    for inst in instances:
        bodies.append(_dumps({"instances": [inst]}))
    if len(instances) > 1:
        bodies.append(_dumps({"instances": instances, "explain": False}))
    return bodies


def _set_inputs(model: Model) -> None:
    """The numeric fields a request must carry (``model.required``: time first, then settings,
    kept sensors and derived-feature inputs; row-wise profiles: every sensor) and, for window
    profiles, the ``itemgetter`` the fast parser pulls them with."""
    spec = model.spec
    need = []
    if spec.time_column:
        need.append(spec.time_column)
    need += list(spec.setting_columns) + list(spec.sensors)
    for d_ in spec.derived:
        need += [c for c in d_["columns"] if c not in need]
    if not spec.window_sizes:  # row-wise profiles: every sensor column is an input
        need += [c for c in spec.profile_obj.sensor_columns if c not in need]
    model.required = need
    if spec.window_sizes and spec.time_column and len(need) >= 2:
        model.getter = operator.itemgetter(*need)


def model_fn(model_dir: str) -> Model:
    """Load ``xgboost-model`` or ``linear-model.json`` plus ``feature_spec.json`` from ``model_dir``."""
    d = Path(model_dir)
    spec = F.FeatureSpec.from_json((d / "feature_spec.json").read_text())
    meta = json.loads((d / "model_meta.json").read_text()) if (d / "model_meta.json").exists() else {}
    model = Model(spec=spec, meta=meta)
    if (d / "xgboost-model").exists():
        import xgboost as xgb

        raw = (d / "xgboost-model").read_bytes()
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        # one thread per worker: workers, not threads, use the cores (no oversubscription)
        booster.set_param({"nthread": int(os.environ.get("PREDMAINT_PREDICT_THREADS", "1"))})
        if booster.num_features() != len(spec.feature_names):
            raise ValueError(f"model has {booster.num_features()} features, spec has {len(spec.feature_names)}")
        model.booster = booster
    elif (d / "linear-model.json").exists():
        raw = (d / "linear-model.json").read_bytes()
        model.linear = _Linear(json.loads(raw))
        if len(model.linear.coef) != len(spec.feature_names):
            raise ValueError("linear model and feature spec disagree on the number of features")
    else:
        raise FileNotFoundError(f"{d}: neither xgboost-model nor linear-model.json")
    model.version = os.environ.get("PREDMAINT_MODEL_VERSION") or meta.get("model_version") or \
        f"{meta.get('algorithm', 'model')}-{hashlib.sha256(raw).hexdigest()[:12]}"
    _set_inputs(model)
    if model.booster is not None and os.environ.get("PREDMAINT_FOREST", "1") != "0":
        # fastest first: the compiled walker; else NumPy for small requests; else the booster
        if os.environ.get("PREDMAINT_COMPILED_FOREST", "1") != "0":
            model.compiled = _CompiledForest.from_booster(model.booster)
        if model.compiled is None:
            model.forest = _Forest.from_booster(model.booster)
    model.threshold = float(meta.get("threshold") or 0.5)
    model.reader = _RequestReader.for_model(model)
    return model


# ----------------------------------------------------------------------------------------------
# Request parsing and validation
# ----------------------------------------------------------------------------------------------
@dataclass
class Request:
    """Validated instances: ids, and every instance's readings stacked as columns.

    ``columns`` maps column -> 1-D float array over all instances' readings (each instance's
    time-sorted); instance i owns rows ``offsets[i]:offsets[i+1]``. Row-wise profiles have one
    row per instance.
    """

    asset_ids: list[Any]
    columns: dict[str, np.ndarray]
    offsets: np.ndarray
    explain: bool = False


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _number(v: Any, where: str) -> float:
    if type(v) is float:
        if not math.isfinite(v):
            raise _bad(f"{where}: must be a finite number")
        return v
    if type(v) is int:
        try:
            return float(v)
        except OverflowError:  # an integer beyond the float range (the lenient parser keeps it exact)
            raise _bad(f"{where}: number out of range") from None
    kind = "null" if v is None else type(v).__name__
    raise _bad(f"{where}: expected a number, got {kind}")


def _asset_id(inst: Any, i: int, shape: str) -> Any:
    """The instance's asset id (default: its index); 400 if the instance or the id is malformed."""
    if not isinstance(inst, dict):
        raise _bad(f"instances[{i}]: must be {shape}")
    asset = inst.get("asset_id", i)
    if not isinstance(asset, str | int) or isinstance(asset, bool):
        raise _bad(f"instances[{i}].asset_id: must be a string or an integer")
    return asset


def _parse_asset(inst: Any, i: int, model: Model) -> tuple[Any, dict[str, np.ndarray]]:
    """One asset's readings, checked value by value: time-sorted columns or the exact 400/413."""
    where = f"instances[{i}]"
    asset = _asset_id(inst, i, "an object")
    readings = inst.get("readings")
    if not isinstance(readings, list):
        raise _bad(f"{where}.readings: required, a list of readings")
    if not readings:
        raise _bad(f"{where}.readings: empty; send at least one reading")
    if len(readings) > MAX_READINGS:
        raise InferenceError(413, f"{where}.readings: {len(readings)} readings; at most {MAX_READINGS}")
    spec = model.spec
    tc = spec.time_column
    # keep only the trailing history needed, after ordering by time
    for j, r in enumerate(readings):
        if not isinstance(r, dict):
            raise _bad(f"{where}.readings[{j}]: must be an object")
    times = [_number(r.get(tc), f"{where}.readings[{j}].{tc}") for j, r in enumerate(readings)]
    order = sorted(range(len(readings)), key=times.__getitem__)
    for a, b in itertools.pairwise(order):
        if times[a] == times[b]:
            raise _bad(f"{where}.readings[{b}].{tc}: duplicate {tc} {times[b]:g}")
    keep = order[-spec.history_needed:]
    cols: dict[str, np.ndarray] = {tc: np.fromiter((times[j] for j in keep), float, len(keep))}
    for c in model.required:
        if c == tc:
            continue
        vals = []
        for j in keep:
            r = readings[j]
            if c not in r:
                raise _bad(f"{where}.readings[{j}].{c}: missing")
            vals.append(_number(r[c], f"{where}.readings[{j}].{c}"))
        cols[c] = np.asarray(vals, dtype=float)
    return asset, cols


def _parse_row(inst: Any, i: int, model: Model) -> tuple[Any, dict[str, np.ndarray]]:
    where = f"instances[{i}]"
    asset = _asset_id(inst, i, "an object of the profile's columns")
    cols: dict[str, np.ndarray] = {}
    for c in model.required:
        if c not in inst:
            raise _bad(f"{where}.{c}: missing")
        cols[c] = np.asarray([_number(inst[c], f"{where}.{c}")])
    for c, levels in model.spec.categorical.items():
        v = inst.get(c)
        if v not in levels:
            raise _bad(f"{where}.{c}: must be one of {levels}, got {v!r}")
        cols[c] = np.asarray([v])
    return asset, cols


def _explain_requested(custom_attributes: str | None) -> bool:
    if not custom_attributes:
        return False
    for part in custom_attributes.replace(";", ",").split(","):
        k, _, v = part.partition("=")
        if k.strip().lower() == "explain" and v.strip().lower() in ("true", "1", "yes"):
            return True
    return False


def input_fn(request_body: bytes | str, request_content_type: str | None,
             custom_attributes: str | None = None, model: Model | None = None) -> dict[str, Any]:
    """Decode and structurally check a request body. Returns the decoded document.

    Per-field validation needs the model's spec, so it happens in ``predict_fn``; the parsed
    document keeps the explain flag under ``"_explain"``.
    """
    if _media_type(request_content_type) != JSON:
        raise InferenceError(415, f"unsupported Content-Type {request_content_type!r}; use {JSON}")
    if len(request_body) > MAX_BODY_BYTES:
        raise InferenceError(413, f"body of {len(request_body)} bytes exceeds {MAX_BODY_BYTES}")
    lenient = None
    try:
        doc = _loads(request_body)
    except (ValueError, TypeError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:120]
        try:  # NaN, Infinity or 1e999? The stdlib parser reads them, so validation can name the field.
            doc = _lenient_loads(request_body)
        except (ValueError, TypeError, RecursionError):
            raise _bad(f"body: malformed JSON ({reason})") from None
        lenient = reason
    if not isinstance(doc, dict):
        raise _bad("body: must be a JSON object with an 'instances' list")
    instances = doc.get("instances")
    if not isinstance(instances, list):
        raise _bad("instances: required, a list")
    if not instances:
        raise _bad("instances: empty; send at least one instance")
    if len(instances) > MAX_INSTANCES:
        raise InferenceError(413, f"instances: {len(instances)} instances; at most {MAX_INSTANCES} per request")
    explain = doc.get("explain", False)
    if not isinstance(explain, bool):
        raise _bad("explain: must be true or false")
    doc["_explain"] = explain or _explain_requested(custom_attributes)
    if lenient:
        doc["_lenient"] = lenient
    return doc


_NUMBER_TYPES = frozenset((float, int))


def _fast_assets(instances: list[Any], model: Model) -> Request | None:
    """All assets of a request in a few C-level passes, or None to take the checked path.

    One ``itemgetter`` call per reading pulls the required fields (``model.required`` order, time
    first), ``np.array`` builds the (readings, columns) matrix (strings, nulls, nested values and
    huge integers make it non-numeric), vectorised checks prove every value finite and each
    asset's times strictly increasing (sorting the assets that came out of order). ``np.array``
    reads true/false as 1/0, so only the values equal to 0 or 1 get their Python type checked.
    Anything unusual returns None and the per-value path produces the exact error, so both paths
    accept and refuse the same requests.
    """
    ids: list[Any] = []
    lists: list[list[Any]] = []
    for i, inst in enumerate(instances):
        if type(inst) is not dict:
            return None
        asset = inst.get("asset_id", i)
        readings = inst.get("readings")
        if type(asset) not in (str, int) or type(readings) is not list or not 0 < len(readings) <= MAX_READINGS:
            return None
        ids.append(asset)
        lists.append(readings)
    try:
        rows = list(map(model.getter, itertools.chain.from_iterable(lists)))  # KeyError/TypeError: bad reading
        arr = np.array(rows)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if arr.ndim != 2 or arr.dtype.kind not in "fi":
        return None
    for r, c in zip(*np.nonzero((arr == 0) | (arr == 1)), strict=True):
        if type(rows[r][c]) is bool:
            return None
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        return None
    offsets = np.zeros(len(lists) + 1, dtype=np.intp)
    np.cumsum([len(r) for r in lists], out=offsets[1:])
    t = arr[:, 0]
    if len(t) > 1:
        step_ok = np.diff(t) > 0
        step_ok[offsets[1:-1] - 1] = True  # steps across two assets do not count
        if not step_ok.all():  # some asset is out of time order: sort within assets, refuse duplicates
            owner = np.repeat(np.arange(len(lists)), np.diff(offsets))
            arr = arr[np.lexsort((t, owner))]
            step_ok = np.diff(arr[:, 0]) > 0
            step_ok[offsets[1:-1] - 1] = True
            if not step_ok.all():
                return None
    return Request(ids, F.ColumnMatrix(arr, model.required), offsets)


def parse_instances(doc: dict[str, Any], model: Model) -> Request:
    """Validate every instance against the model's feature spec; raise the first 4xx found."""
    instances = doc["instances"]
    if model.getter is not None and not doc.get("_lenient"):
        fast = _fast_assets(instances, model)
        if fast is not None:
            fast.explain = bool(doc.get("_explain"))
            return fast
    parse = _parse_asset if model.spec.window_sizes else _parse_row
    ids, parts = [], []
    for i, inst in enumerate(instances):
        a, c = parse(inst, i, model)
        ids.append(a)
        parts.append(c)
    lengths = [len(next(iter(c.values()))) for c in parts]
    offsets = np.zeros(len(parts) + 1, dtype=np.intp)
    np.cumsum(lengths, out=offsets[1:])
    columns = {k: np.concatenate([c[k] for c in parts]) for k in parts[0]}
    if doc.get("_lenient"):  # the strict parser refused the body, yet every used value is fine
        raise _bad(f"body: malformed JSON ({doc['_lenient']})")
    return Request(ids, columns, offsets, bool(doc.get("_explain")))


def features_matrix(req: Request, model: Model) -> np.ndarray:
    """(n_instances, n_features) float32 matrix, one row per instance (its last reading)."""
    return F.transform_last(req.columns, req.offsets, model.spec).astype(np.float32)


def predict_matrix(model: Model, X: np.ndarray) -> np.ndarray:
    """Predictions (n,) float64 for a feature matrix X (n, f): RUL clipped to [0, cap], or probabilities.

    The compiled walker (``forest.c``) serves every size when it loaded; without it small requests
    walk the trees in NumPy (``_Forest``) and larger ones use xgboost's blocked predictor,
    single-threaded (workers use the cores). All three give identical results.
    """
    if model.compiled is not None:
        p = model.compiled.predict(X)
    elif model.forest is not None and len(X) <= model.forest.MAX_ROWS:
        p = model.forest.predict(X)
    elif model.booster is not None:
        p = model.booster.inplace_predict(X)
    else:
        p = model.linear.predict(X.astype(np.float64))
    p = np.asarray(p, dtype=float)
    if model.is_regression:
        cap = model.spec.label_cap
        p = np.clip(p, 0.0, cap if cap else None)
    return p


def predict_fn(data: dict[str, Any] | Request, model: Model) -> dict[str, Any]:
    """Features + prediction for every instance; returns the response document."""
    req = data if isinstance(data, Request) else parse_instances(data, model)
    return _response(model, req.asset_ids, features_matrix(req, model), req.explain)


def _response(model: Model, asset_ids: list[Any], X: np.ndarray, explain_: bool) -> dict[str, Any]:
    """The response document for the feature rows ``X`` of ``asset_ids``."""
    p = predict_matrix(model, X)
    preds: list[dict[str, Any]] = []
    if model.is_regression:
        for a, v in zip(asset_ids, p, strict=True):
            preds.append({"asset_id": a, "rul": round(float(v), 3)})
    else:
        for a, v in zip(asset_ids, p, strict=True):
            preds.append({"asset_id": a, "failure_probability": round(float(v), 6),
                          "failure": bool(v >= model.threshold)})
    if explain_:
        contribs = explain(model, X)
        for pred, row in zip(preds, contribs, strict=True):
            pred["contributions"] = row
    return {"predictions": preds, "model_version": model.version}


def explain(model: Model, X: np.ndarray, top: int = TOP_CONTRIBUTIONS) -> list[list[dict[str, Any]]]:
    """Top ``top`` feature contributions (SHAP values for trees, coef*x for linear) per row."""
    if model.booster is not None:
        import xgboost as xgb

        c = model.booster.predict(xgb.DMatrix(X, feature_names=model.spec.feature_names), pred_contribs=True)
    else:
        c = model.linear.margin_contribs(X.astype(np.float64))
    names = model.spec.feature_names
    out = []
    for row in c[:, :-1]:
        idx = np.argsort(-np.abs(row))[:top]
        out.append([{"feature": names[j], "value": round(float(X[len(out), j]), 6),
                     "contribution": round(float(row[j]), 6)} for j in idx])
    return out


def output_fn(prediction: dict[str, Any], accept: str | None) -> tuple[bytes, str]:
    """Serialise the response as JSON; any other Accept is refused with 406."""
    media = _media_type(accept)
    if media not in ("", "*/*", JSON, "application/*"):
        raise InferenceError(406, f"unsupported Accept {accept!r}; this endpoint answers {JSON}")
    return _dumps(prediction), JSON


def handle(model: Model, body: bytes, content_type: str | None, accept: str | None,
           custom_attributes: str | None = None) -> tuple[int, bytes, str]:
    """input_fn -> predict_fn -> output_fn with errors mapped to (status, JSON error, type)."""
    try:
        media = _media_type(accept)
        if media not in ("", "*/*", JSON, "application/*"):  # refuse before doing the work
            raise InferenceError(406, f"unsupported Accept {accept!r}; this endpoint answers {JSON}")
        if (model.reader is not None and type(body) is bytes and len(body) <= MAX_BODY_BYTES
                and _media_type(content_type) == JSON and not _explain_requested(custom_attributes)):
            fast = model.reader.read(body)  # the compiled reader, or None: the Python path decides
            if fast is not None:
                return 200, _dumps(_response(model, *fast, False)), JSON
        doc = input_fn(body, content_type, custom_attributes)
        try:
            prediction = predict_fn(doc, model)
        except InferenceError as exc:
            if doc.get("_lenient") and exc.message.endswith((": must be a finite number", ": number out of range")):
                exc.message += " (NaN, Infinity and numbers beyond the float range are malformed JSON)"
            raise
        out, ctype = output_fn(prediction, accept)
        return 200, out, ctype
    except InferenceError as exc:
        return exc.status_code, _dumps({"error": exc.message}), JSON


def transform_fn(model: Model, request_body: bytes, content_type: str, accept: str) -> Any:
    """SageMaker XGBoost container hook: the whole request with the right HTTP status."""
    status, body, ctype = handle(model, request_body, content_type, accept)
    if status == 200:
        return body, ctype
    try:  # the container's web framework response carries a status code
        from sagemaker_containers.beta.framework import worker

        return worker.Response(response=body, status=status, mimetype=ctype)
    except ImportError:
        return body, ctype
