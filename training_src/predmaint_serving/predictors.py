"""Predictions: the compiled tree walker, the NumPy tree walker, the candidate's own predictor.

``predict_matrix`` picks the fastest predictor the model loaded (all give identical results:
each walker is built from an xgboost booster, checked against it, and dropped if anything differs;
other candidates predict with their own ``predict``);
``explain`` gives the top feature contributions (each candidate's ``contributions``: SHAP values for
xgboost trees, coef*x for linear).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from . import F, native

TOP_CONTRIBUTIONS = 5


class NumpyForest:
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
    def from_booster(cls, booster: Any) -> NumpyForest | None:
        """Build from an xgboost Booster; None when the model is unsupported or fails the self-check."""
        return checked_walker(booster, cls._pad)

    @classmethod
    def _pad(cls, trees: list[dict[str, Any]], base: float, logistic: bool) -> NumpyForest | None:
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


def tree_arrays(booster: Any) -> tuple[list[dict[str, Any]], float, bool] | None:
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


def checked_walker(booster: Any, build: Any) -> Any:
    """``build(trees, base_margin, logistic)`` from the booster's trees, kept only if it reproduces
    the booster (``agrees_with``); None for unsupported models, a failed build or any surprise in
    the model format (the booster always works)."""
    parsed = tree_arrays(booster)
    if parsed is None:
        return None
    try:
        walker = build(*parsed)
        return walker if walker is not None and agrees_with(walker.predict, booster) else None
    except Exception:
        return None


def check_rows(n_features: int) -> np.ndarray:
    """The random rows (64, n_features) float32 a tree walker is checked on at load: both branches of
    most splits get exercised at this scale, and every 7th row has a missing value."""
    rng = np.random.default_rng(0)
    X = rng.normal(0.0, 1.5, size=(64, n_features)).astype(np.float32)
    X[:, 0] = rng.uniform(1, 350, size=64)  # time-like first column
    X[::7, 1 % n_features] = np.nan  # the default-direction branches
    return X


def walker_input(X: np.ndarray, n_features: int) -> np.ndarray:
    """``X`` as the compiled walkers read it: C-ordered float32 (n, n_features); ValueError otherwise."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"expected (n, {n_features}) features, got {X.shape}")
    return X


def agrees_with(predict: Any, booster: Any) -> bool:
    """Self-check of a tree walker against the booster on random rows (both branches of most splits
    get exercised at this scale, and every 7th row has a missing value)."""
    X = check_rows(booster.num_features())
    want = np.asarray(booster.inplace_predict(X), dtype=np.float64)
    got = np.asarray(predict(X), dtype=np.float64)
    return bool(np.all(np.abs(got - want) <= 1e-5 * np.maximum(1.0, np.abs(want))))


class CompiledForest:
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
    def from_booster(cls, booster: Any) -> CompiledForest | None:
        """None without a C compiler/library, for unsupported models, or if the self-check fails."""

        def build(trees: list[dict[str, Any]], base: float, logistic: bool) -> CompiledForest | None:
            fn = native.forest_function()
            return None if fn is None else cls(fn, trees, base, logistic, booster.num_features())

        return checked_walker(booster, build)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions (n,) float32 for X (n, n_features), like ``booster.inplace_predict``."""
        X = walker_input(X, self.n_features)
        out = np.empty(len(X), dtype=np.float32)
        self.fn(X.ctypes.data, len(X), self.n_features, *self._static, out.ctypes.data)
        return out


class CompiledTrees:
    """An ``hgb`` model's trees (``candidates.hgb.Trees``) walked by ``forest.c``'s ``predmaint_hgb_margin``.

    The NumPy walk steps every tree level by level, so its cost grows with the trees' number and depth
    (a 710-tree model: 0.36 ms for one row, 22 ms for 100); in C a row costs microseconds. Same float64
    comparisons and sums as the NumPy walk, so the same bits: checked at load on random rows
    (``from_trees``) and on the FD001 test fleet in tests/perf.
    """

    NODE = np.dtype([("left", "<i4"), ("right", "<i4"), ("feature", "<u4"), ("unused", "<u4"),
                     ("value", "<f8")])  # forest.c's Node64

    def __init__(self, fn: Any, trees: Any):
        inner = ~trees.leaf
        if len(trees.value) >= 2**31 or (inner.any() and int(trees.feature[inner].max()) >= trees.n_features):
            raise ValueError("the trees do not fit the compiled walker")
        nodes = np.zeros(len(trees.value), dtype=self.NODE)
        nodes["left"], nodes["right"] = trees.left, trees.right  # -1 on a leaf
        missing_left = np.where(inner & trees.missing_left, 0x80000000, 0).astype(np.uint32)
        nodes["feature"] = np.where(inner, trees.feature, 0).astype(np.uint32) | missing_left
        nodes["value"] = np.where(inner, trees.threshold, trees.value)
        self.nodes, self.roots = nodes, np.ascontiguousarray(trees.roots, dtype=np.int32)
        self.fn, self.n_features, self.logistic = fn, trees.n_features, trees.logistic
        self._static = (self.nodes.ctypes.data, self.roots.ctypes.data, len(self.roots), float(trees.baseline))

    @classmethod
    def from_trees(cls, trees: Any) -> CompiledTrees | None:
        """None without the compiled library, or if it disagrees with the NumPy walk on random rows
        (every 7th with a missing value) in any bit."""
        try:
            fn = native.hgb_function()
            if fn is None:
                return None
            walker = cls(fn, trees)
            X = check_rows(trees.n_features)
            return walker if np.array_equal(walker.predict(X), trees.predict(X)) else None
        except Exception:  # any surprise: the NumPy walk always works
            return None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Like ``Trees.predict``: RUL (uncapped) or the positive class's probability, float64."""
        X = walker_input(X, self.n_features)
        m = np.empty(len(X), dtype=np.float64)
        self.fn(X.ctypes.data, len(X), self.n_features, *self._static, m.ctypes.data)
        return 1.0 / (1.0 + np.exp(-m)) if self.logistic else m


def predict_matrix(model: Any, X: np.ndarray) -> np.ndarray:
    """Predictions (n,) float64 for a feature matrix X (n, f): RUL clipped to [0, cap], or probabilities.

    The compiled walker (``forest.c``) serves every size when it loaded; without it small requests
    walk the trees in NumPy (``NumpyForest``) and larger ones use xgboost's blocked predictor,
    single-threaded (workers use the cores). All three give identical results.
    """
    if model.compiled is not None:
        p = model.compiled.predict(X)
    elif model.forest is not None and len(X) <= NumpyForest.MAX_ROWS:  # a NumpyForest or a pair of them
        p = model.forest.predict(X)
    else:
        p = model.predictor.predict(X)
    p = np.asarray(p, dtype=float)
    if model.is_regression:
        p = F.clip_rul(p, model.spec.label_cap)
    return p


def explain(model: Any, X: np.ndarray, top: int = TOP_CONTRIBUTIONS) -> list[list[dict[str, Any]]]:
    """Top ``top`` feature contributions (the candidate's ``contributions``) per row."""
    c = model.predictor.contributions(X)
    names = model.spec.feature_names
    out = []
    for row in c[:, :-1]:
        idx = np.argsort(-np.abs(row))[:top]
        out.append([{"feature": names[j], "value": round(float(X[len(out), j]), 6),
                     "contribution": round(float(row[j]), 6)} for j in idx])
    return out
