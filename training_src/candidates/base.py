"""What every candidate module shares: the ``Param`` of a tuned range and the hyperparameter check.

Standard library only: the prepare Lambda imports the candidates' ranges (through
``search_space``) in a runtime without NumPy, xgboost or scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TrainError(ValueError):
    """Bad channel contents or hyperparameters."""


@dataclass(frozen=True)
class Param:
    """One tuned hyperparameter: its ``--name``, kind ("int", "float" or "categorical") and range."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[str, ...] = ()


def number(hp: dict[str, Any], name: str, kind: type, low: float, high: float, default: str | None = None) -> Any:
    """``hp[name]`` (a string as SageMaker passes it; ``default`` when absent and given) as ``kind``
    within ``[low, high]``; a ``TrainError`` naming the hyperparameter otherwise."""
    raw = hp[name] if default is None else hp.get(name, default)
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"hyperparameter {name}={raw!r} is not a {kind.__name__}") from exc
    if not low <= value <= high:
        raise TrainError(f"hyperparameter {name}={value} outside [{low}, {high}]")
    return value


def metric_name(task: str) -> str:
    """The objective line's name (``validation-rmse: 12.3``), which tuning reads, for a task."""
    return "validation-rmse" if task == "rul_regression" else "validation-aucpr"
