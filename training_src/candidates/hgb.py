"""Candidate ``hgb``: scikit-learn's histogram gradient boosting (HistGradientBoostingRegressor /
Classifier), a second boosting family with leaf-wise growth (``max_leaf_nodes``) instead of XGBoost's
depth-wise trees.

Saved as plain JSON trees, not a pickle: training runs in the SageMaker XGBoost container (scikit-learn
1.8, Python 3.12) and in local mode (scikit-learn 1.9, Python 3.11), and a pickled estimator is only
guaranteed to load under the scikit-learn version that wrote it. The JSON (``FORMAT``) holds each
tree's nodes as scikit-learn's own predictor arrays give them (feature, threshold, missing-value
direction, children, leaf values); serving walks them with NumPy, the way scikit-learn predicts
(``x <= threshold`` in float64, missing values by the learned direction, leaf values added to the
baseline tree by tree in float64), so it needs neither scikit-learn nor a matching version. Export
reads scikit-learn internals (``_predictors``, ``_baseline_prediction``): it checks them and, after
every fit, compares the walker with scikit-learn's own predictions, and fails the job with a clear
error if a scikit-learn version ever changes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import Param, TrainError, number

NAME = "hgb"
MODEL_FILE = "hgb-model.json"
FORMAT = "predmaint-hgb-trees/1"
DISTRIBUTED = False  # the first host fits it on the gathered rows
#: scikit-learn bins and predicts float64 rows (``check_array(dtype=float64)``), and copies rows of any other
#: dtype into float64 for the whole fit: rows read as float64 (each value the float32 feature, widened
#: exactly as that copy widens it) are fitted and predicted as they are
ROW_DTYPE = "float64"
#: tuned under the built-in XGBoost algorithm's tunable names (``wire``; base.TUNABLE_XGBOOST_NAMES): the
#: nearest XGBoost meaning where there is one (rounds, step size, L2 penalty, features per split, least
#: hessian = samples per leaf for squared error), any unused tunable name otherwise; train.py maps back
PARAMS = (
    Param("max_iter", "int", 100, 800, log=True, wire="num_round"),
    Param("learning_rate", "float", 0.02, 0.2, log=True, wire="eta"),
    Param("max_leaf_nodes", "int", 8, 64, log=True, wire="max_depth"),
    Param("min_samples_leaf", "int", 5, 200, log=True, wire="min_child_weight"),
    Param("l2_regularization", "float", 1e-3, 30.0, log=True, wire="lambda"),
    Param("max_features", "float", 0.4, 1.0, wire="colsample_bynode"),
    Param("max_bins", "int", 63, 255, log=True, wire="max_delta_step"),
)
START: dict[str, Any] = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                         "l2_regularization": 1.0, "max_features": 0.6, "max_bins": 255}
#: values of hyperparameters a job does not set (scikit-learn's defaults)
DEFAULTS: dict[str, Any] = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                            "l2_regularization": 0.0, "max_features": 1.0, "max_bins": 255}
_FIELDS = ("feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf", "value", "count", "gain")


def estimator_params(hp: dict[str, str], seed: int) -> dict[str, Any]:
    """Keyword arguments of the scikit-learn estimator from string hyperparameters."""
    merged = {**DEFAULTS, **{k: v for k, v in hp.items() if k in DEFAULTS}}
    return {
        "max_iter": number(merged, "max_iter", int, 1, 20000),
        "learning_rate": number(merged, "learning_rate", float, 1e-4, 1.0),
        "max_leaf_nodes": number(merged, "max_leaf_nodes", int, 2, 4096),
        "min_samples_leaf": number(merged, "min_samples_leaf", int, 1, 100000),
        "l2_regularization": number(merged, "l2_regularization", float, 0.0, 1e4),
        "max_features": number(merged, "max_features", float, 0.01, 1.0),
        "max_bins": number(merged, "max_bins", int, 2, 255),
        "early_stopping": False,  # every job trains max_iter rounds: the tuned value is the one refit uses
        "random_state": seed,
    }


class Fitted:
    """The fitted estimator and its exported trees (``doc``, what ``save`` writes)."""

    def __init__(self, estimator: Any, doc: dict[str, Any]):
        self.estimator, self.doc = estimator, doc


def fit(X: Any, y: Any, task: str, hp: dict[str, str], nthread: int, seed: int, Xv: Any = None, yv: Any = None,
        names: list[str] | None = None, report_every: int = 25, checkpoints: Any = None) -> tuple[Fitted, Any]:
    """Fit with ``nthread`` OpenMP threads; export the trees and check them against the estimator on
    (up to) 512 training rows. Returns (model, validation predictions or None)."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    params = estimator_params(hp, seed)
    regression = task == "rul_regression"
    est = HistGradientBoostingRegressor(**params) if regression else HistGradientBoostingClassifier(**params)
    empty = np.flatnonzero(np.isnan(X).all(axis=0)) if len(X) else np.zeros(0, dtype=int)
    # scikit-learn cannot bin a column with no value (a window model's life columns: candidates/pair.py);
    # a constant column gets no split, so served rows never read it, missing or not. The columns are set
    # to 0 in place for the fit and back to NaN after it (they held nothing else), rather than in a copy
    # of X: one copy of the rows less at the fit's peak (FD002 x4: 100 MB)
    X[:, empty] = 0
    try:
        with threadpool_limits(limits=max(1, nthread), user_api="openmp"):
            est.fit(X, y)
            model = Fitted(est, export(est, task, X.shape[1]))
            sample = np.asarray(X[:: max(1, len(X) // 512)][:512], dtype=np.float64)
            want = predict(model, sample)
    finally:
        X[:, empty] = np.nan
    got = Trees(model.doc).predict(sample)
    if not np.allclose(got, want, rtol=1e-9, atol=1e-9):
        raise TrainError(f"exported hgb trees disagree with scikit-learn {_sklearn_version()}'s predictions "
                         f"(max difference {np.max(np.abs(got - want)):.3g}); this scikit-learn is not supported")
    return model, (predict(model, Xv) if Xv is not None else None)


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def export(est: Any, task: str, n_features: int) -> dict[str, Any]:
    """The estimator's trees as plain JSON data (``FORMAT``)."""
    import numpy as np

    try:
        baseline = np.asarray(est._baseline_prediction, dtype=np.float64).ravel()
        iterations = est._predictors
        trees = []
        for predictors in iterations:
            if len(predictors) != 1 or len(baseline) != 1:
                raise TrainError("hgb: only single-output models (regression, binary) are exported")
            nodes = predictors[0].nodes
            if nodes["is_categorical"].any():
                raise TrainError("hgb: categorical splits are not exported")
            trees.append({f: nodes[f].tolist() for f in _FIELDS})
    except (AttributeError, KeyError, ValueError, IndexError) as exc:
        raise TrainError(f"hgb: scikit-learn {_sklearn_version()}'s HistGradientBoosting internals are not the "
                         f"ones this export reads ({type(exc).__name__}: {exc})") from exc
    return {"format": FORMAT, "task": task, "n_features": n_features, "sklearn_version": _sklearn_version(),
            "baseline": float(baseline[0]), "logistic": task == "failure_classification", "trees": trees}


def predict(model: Fitted, X: Any) -> Any:
    """scikit-learn's own predictions: RUL, or the probability of the positive class."""
    if model.doc["logistic"]:
        return model.estimator.predict_proba(X)[:, 1]
    return model.estimator.predict(X)


def save(model: Fitted, model_dir: Path) -> None:
    (model_dir / MODEL_FILE).write_text(json.dumps(model.doc, separators=(",", ":")))


class Trees:
    """The exported trees, walked with NumPy: every tree at once, one level per step.

    Node arrays of all trees are concatenated (child ids made global); ``predict`` reproduces
    scikit-learn's ``x <= threshold`` (float64), missing values to the learned side, and its sum
    order (baseline, then tree by tree in float64).
    """

    def __init__(self, doc: dict[str, Any]):
        import numpy as np

        if doc.get("format") != FORMAT:
            raise ValueError(f"hgb model file has format {doc.get('format')!r}; this code reads {FORMAT!r}")
        trees = doc["trees"]
        sizes = [len(t["value"]) for t in trees]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

        def cat(key: str, dtype: Any) -> Any:
            return np.concatenate([np.asarray(t[key], dtype=dtype) for t in trees]) if trees else np.zeros(0, dtype)

        shift = np.repeat(starts, sizes)
        self.leaf = cat("is_leaf", bool)
        self.feature = np.where(self.leaf, 0, cat("feature_idx", np.int64))
        self.threshold = cat("num_threshold", np.float64)
        self.missing_left = cat("missing_go_to_left", bool)
        self.left = np.where(self.leaf, -1, cat("left", np.int64) + shift)
        self.right = np.where(self.leaf, -1, cat("right", np.int64) + shift)
        self.value = cat("value", np.float64)
        self.count = cat("count", np.float64)
        self.gain = cat("gain", np.float64)
        self.roots = starts
        self.baseline = float(doc["baseline"])
        self.logistic = bool(doc["logistic"])
        self.n_features = int(doc["n_features"])
        self.doc = doc
        self._mean = None

    def _leaves(self, X: Any, visit: Any = None) -> Any:
        """The leaf each row reaches in each tree, (n, trees); ``visit(rows, nodes, children)`` sees each step."""
        import numpy as np

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {X.shape}")
        node = np.broadcast_to(self.roots, (len(X), len(self.roots))).copy()
        rows = np.arange(len(X))[:, None]
        while True:
            inner = ~self.leaf[node]
            if not inner.any():
                return node
            x = X[rows, self.feature[node]]
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            child = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
            if visit is not None:
                visit(rows, node, child, inner)
            node = child

    def margin(self, X: Any) -> Any:
        import numpy as np

        vals = self.value[self._leaves(X)]
        acc = np.concatenate([np.full((len(vals), 1), self.baseline), vals], axis=1)
        return np.cumsum(acc, axis=1)[:, -1]

    def predict(self, X: Any) -> Any:
        """RUL (uncapped), or the probability of the positive class."""
        import numpy as np

        m = self.margin(X)
        return 1.0 / (1.0 + np.exp(-m)) if self.logistic else m

    def _node_means(self) -> Any:
        """Each node's training-weighted mean leaf value (children have higher ids than their parent)."""
        import numpy as np

        if self._mean is None:
            mean = self.value.copy()
            for i in np.flatnonzero(~self.leaf)[::-1]:
                cl, cr = self.count[self.left[i]], self.count[self.right[i]]
                total = cl + cr
                mean[i] = (cl * mean[self.left[i]] + cr * mean[self.right[i]]) / total if total else 0.0
            self._mean = mean
        return self._mean

    def contributions(self, X: Any) -> Any:
        """Path contributions (Saabas: each split's change of the training-weighted mean, credited to its
        feature), (n, f+1) in margin space, bias last; each row sums to its margin."""
        import numpy as np

        mean = self._node_means()
        n = len(np.asarray(X))
        out = np.zeros((n, self.n_features + 1))

        def visit(rows: Any, node: Any, child: Any, inner: Any) -> None:
            r, t = np.nonzero(inner)
            np.add.at(out, (r, self.feature[node[r, t]]), mean[child[r, t]] - mean[node[r, t]])

        self._leaves(X, visit)
        out[:, -1] = self.baseline + mean[self.roots].sum()
        return out

    def importance(self) -> Any:
        """Total split gain per feature."""
        import numpy as np

        inner = ~self.leaf
        return np.bincount(self.feature[inner], weights=self.gain[inner], minlength=self.n_features)


def load(model_dir: Path, spec: Any) -> Trees:
    trees = Trees(json.loads((Path(model_dir) / MODEL_FILE).read_text()))
    if trees.n_features != len(spec.feature_names):
        raise ValueError(f"hgb model has {trees.n_features} features, spec has {len(spec.feature_names)}")
    return trees
