"""Candidate ``linear``: ridge regression / L2 logistic regression on standardised features (scikit-learn
fits), stored as plain JSON weights (no pickle: loads under any scikit-learn or Python version)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from .base import Param, number

NAME = "linear"
MODEL_FILE = "linear-model.json"
DISTRIBUTED = False  # the first host fits it on the gathered rows
ROW_DTYPE = "float32"  # fit standardises a float64 copy whatever it is given
PARAMS = (Param("alpha", "float", 1e-3, 1e3, log=True),)
START: dict[str, Any] = {"alpha": 1.0}


class LinearModel:
    """Standardisation + weights: ``margin = ((x - mean) / scale) @ coef + intercept``."""

    def __init__(self, doc: dict[str, Any]):
        import numpy as np

        self.doc = doc
        self.mean = np.asarray(doc["mean"])
        self.scale = np.asarray(doc["scale"])
        self.coef = np.asarray(doc["coef"])
        self.intercept = float(doc["intercept"])
        self.logistic = doc["task"] == "failure_classification"

    def contributions(self, X: Any) -> Any:
        """Per-feature additive contributions (n, f+1), last column the bias (margin space)."""
        import numpy as np

        X = np.asarray(X, dtype=np.float64)
        return np.hstack([_standard(X, self.mean, self.scale) * self.coef, np.full((len(X), 1), self.intercept)])

    def predict(self, X: Any) -> Any:
        import numpy as np

        margin = _standard(X, self.mean, self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-margin)) if self.logistic else margin

    def importance(self) -> Any:
        """|coef| on standardised features."""
        import numpy as np

        return np.abs(self.coef)


def _standard(X: Any, mean: Any, scale: Any) -> Any:
    """Standardised features; a missing value (NaN) becomes 0, the training mean (mean imputation)."""
    import numpy as np

    z = (np.asarray(X, dtype=np.float64) - mean) / scale
    return np.where(np.isnan(z), 0.0, z)


def fit(X: Any, y: Any, task: str, hp: dict[str, str], nthread: int, seed: int, Xv: Any = None, yv: Any = None,
        names: list[str] | None = None, report_every: int = 25, checkpoints: Any = None) -> tuple[Any, Any]:
    """Fit on standardised features; returns (model, validation predictions or None)."""
    import numpy as np

    alpha = number(hp, "alpha", float, 1e-8, 1e8, "1.0")
    X = X.astype(np.float64)
    # optional features (life summaries) are missing in some rows: statistics of the present values
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column missing in every row: mean NaN -> 0
        mean = np.nan_to_num(np.nanmean(X, axis=0))
        scale = np.nan_to_num(np.nanstd(X, axis=0))
    scale = np.where(scale < 1e-12, 1.0, scale)
    Z = _standard(X, mean, scale)
    if task == "rul_regression":
        from sklearn.linear_model import Ridge
        m = Ridge(alpha=alpha).fit(Z, y)
        coef, intercept = m.coef_, float(m.intercept_)
    else:
        from sklearn.linear_model import LogisticRegression
        m = LogisticRegression(C=1.0 / alpha, max_iter=2000, random_state=seed).fit(Z, y)
        coef, intercept = m.coef_[0], float(m.intercept_[0])
    model = LinearModel({"task": task, "alpha": alpha, "mean": mean.tolist(), "scale": scale.tolist(),
                         "coef": coef.tolist(), "intercept": intercept})
    return model, (model.predict(Xv) if Xv is not None else None)


def predict(model: LinearModel, X: Any) -> Any:
    return model.predict(X)


def save(model: LinearModel, model_dir: Path) -> None:
    (model_dir / MODEL_FILE).write_text(json.dumps(model.doc))


def load(model_dir: Path, spec: Any) -> LinearModel:
    model = LinearModel(json.loads((Path(model_dir) / MODEL_FILE).read_text()))
    if len(model.coef) != len(spec.feature_names):
        raise ValueError("linear model and feature spec disagree on the number of features")
    return model
