"""The candidate algorithms: one module each, behind ``CANDIDATES``.

A candidate module holds everything about its algorithm:

- ``NAME`` (the ``--algorithm`` value and the tuning job's training job definition name),
  ``PARAMS`` (its tuned ranges, ``base.Param``), ``START`` (the first trial local tuning runs),
  ``MODEL_FILE`` (the file in the model directory that holds the fitted model),
  ``DISTRIBUTED`` (whether several SageMaker hosts fit it as one collective fit), ``ROW_DTYPE``
  (``"float32"`` or ``"float64"``: the dtype train.py reads a single host's refit rows in, the one the
  algorithm fits from without a copy of them);
- ``fit(X, y, task, hp, nthread, seed, Xv, yv, names, report_every, checkpoints) -> (model, validation
  predictions)``, ``predict(model, X)``, ``save(model, model_dir)`` (training);
- ``load(model_dir, spec) -> predictor`` with ``predict(X)`` (raw: probabilities or uncapped RUL),
  ``contributions(X)`` ((n, f+1) additive margin contributions, bias last) and ``importance()``
  (per feature, in spec order) (serving and evaluation).

Adding a candidate is a new module here, its line in ``_MODULES`` and its tests. The search space
(``search_space.py``), train.py, serving, the distributed fit, the registry and local tuning read
everything from here.

Every module imports only the standard library at import time (NumPy, xgboost and scikit-learn inside
the functions): the prepare Lambda ships this package to read the ranges (tests/test_layers.py).
"""

from __future__ import annotations

from types import ModuleType

from . import hgb, linear, xgb
from .base import LIFE_MODEL_DIR, Param, TrainError

_MODULES: tuple[ModuleType, ...] = (xgb, linear, hgb)

#: candidate name -> its module, in the order tuning tries their starting points
CANDIDATES: dict[str, ModuleType] = {m.NAME: m for m in _MODULES}

__all__ = ["CANDIDATES", "LIFE_MODEL_DIR", "Param", "TrainError", "get"]


def get(name: str) -> ModuleType:
    """The module of candidate ``name``; a ``TrainError`` listing the candidates otherwise."""
    try:
        return CANDIDATES[name]
    except KeyError:
        raise TrainError(f"unknown algorithm {name!r}; candidates are {list(CANDIDATES)}") from None
