"""Two models of one candidate behind one predictor: the life model and the window model.

A spec with life-summary features (``features.life_names``) can be served by two models fitted with the
same hyperparameters on the same feature layout: the **life model** on the training rows with their life
features, the **window model** on the same rows with the life columns missing, as a caller without a
summary sends them. ``features.life_rows`` is the one rule that sends a row to one or the other. Whether a
profile trains two models or one (on every row with and without its life features) is its
``windows.life_models`` setting (``features.two_models``).

Artifact: the candidate's model file holds the window model, ``<model_dir>/life/<MODEL_FILE>``
(``LIFE_MODEL_DIR``) the life model. An artifact without that folder is a one-model artifact: the one
model answers every row, as it always did.

Standard library at import time, like the rest of ``candidates`` (NumPy and the feature code are
imported where they are used).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .base import LIFE_MODEL_DIR

__all__ = ["LIFE_MODEL_DIR", "Pair", "load", "save"]


class Pair:
    """A window model and a life model routed row by row (``features.life_rows``).

    ``window`` and ``life`` are any two objects of the same kind: a candidate's fitted models (train.py
    routes ``candidates.<name>.predict`` through ``route``), its loaded predictors (``predict``,
    ``contributions``, ``importance``), or the serving fast paths built from them (``predict``)."""

    def __init__(self, window: Any, life: Any, spec: Any):
        from training_src import features as F

        self.window, self.life, self.spec = window, life, spec
        self._k = len(F.life_names(spec))
        self._life_rows = F.life_rows

    def route(self, X: Any, fn: Callable[[Any, Any], Any]) -> Any:
        """``fn(model, rows)`` of each row's model, in row order: (n,) or (n, m) as ``fn`` answers.

        In: X (n, f), the spec's feature layout. A single row (the one-asset request) picks its model
        without masking: the same rule, read on that row alone."""
        import numpy as np

        if len(X) == 1:
            row = X[0, -self._k:]
            return fn(self.window if np.isnan(row).all() else self.life, X)
        mask = self._life_rows(X, self.spec)
        if mask.all():
            return fn(self.life, X)
        if not mask.any():
            return fn(self.window, X)
        with_life = np.asarray(fn(self.life, X[mask]))
        without = np.asarray(fn(self.window, X[~mask]))
        out = np.empty((len(X), *with_life.shape[1:]), dtype=np.result_type(with_life, without))
        out[mask], out[~mask] = with_life, without
        return out

    def predict(self, X: Any) -> Any:
        """Each row's prediction from its model (the members' ``predict``)."""
        return self.route(X, lambda m, rows: m.predict(rows))

    def contributions(self, X: Any) -> Any:
        """Each row's feature contributions from its model (the members' ``contributions``), bias last."""
        return self.route(X, lambda m, rows: m.contributions(rows))

    def importance(self) -> Any:
        """Per-feature importance of the pair: the sum of the two models' (total gain for trees, |coef|
        for linear models); the window model gives the life features none."""
        import numpy as np

        return np.asarray(self.window.importance(), dtype=float) + np.asarray(self.life.importance(), dtype=float)


def save(module: ModuleType, model: Any, model_dir: Path) -> None:
    """Write a fitted model (one, or a ``Pair``) of candidate ``module`` into ``model_dir``: the window
    model (or the one model) as the candidate's model file, the life model under ``LIFE_MODEL_DIR``."""
    if not isinstance(model, Pair):
        module.save(model, model_dir)
        return
    module.save(model.window, model_dir)
    life = Path(model_dir) / LIFE_MODEL_DIR
    life.mkdir(exist_ok=True)
    module.save(model.life, life)


def load(module: ModuleType, model_dir: Path, spec: Any) -> Any:
    """The candidate's loaded predictor of ``model_dir``: a ``Pair`` of predictors when the artifact holds a
    life model (``LIFE_MODEL_DIR``), else the one model's predictor as ``module.load`` returns it."""
    window = module.load(model_dir, spec)
    life_dir = Path(model_dir) / LIFE_MODEL_DIR
    if not (life_dir / module.MODEL_FILE).is_file():
        return window
    return Pair(window, module.load(life_dir, spec), spec)
