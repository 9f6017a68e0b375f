"""What every candidate module shares: the ``Param`` of a tuned range and the hyperparameter check.

Standard library only: the prepare Lambda imports the candidates' ranges (through
``search_space``) in a runtime without NumPy, xgboost or scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TrainError(ValueError):
    """Bad channel contents or hyperparameters."""


#: the hyperparameters SageMaker's built-in XGBoost algorithm lets a tuning job range over
#: (docs.aws.amazon.com/sagemaker/latest/dg/xgboost-tuning.html; aws/sagemaker-xgboost-container
#: algorithm_mode/hyperparameter_validation.py, ``tunable=True``): the only names a tuning job's ranges
#: use, whichever way the tuning service classifies the XGBoost image (docs/aws.md, "Tuning contract")
TUNABLE_XGBOOST_NAMES = frozenset({"alpha", "colsample_bylevel", "colsample_bynode", "colsample_bytree", "eta",
                                   "gamma", "lambda", "max_delta_step", "max_depth", "min_child_weight",
                                   "num_round", "subsample"})


#: the folder of a model artifact that holds, when present, a second model of the same candidate trained only
#: on rows with a life summary (``features.life_rows`` routes each row); the artifact's own model file
#: then answers the rows without one. Absent: the one model answers every row.
LIFE_MODEL_DIR = "life"


@dataclass(frozen=True)
class Param:
    """One tuned hyperparameter: its ``--name``, kind ("int", "float" or "categorical") and range.

    ``wire`` is the name the range travels under in a tuning job and on train.py's command line when
    the candidate's own ``name`` is not one of ``TUNABLE_XGBOOST_NAMES`` (train.py maps it back:
    ``from_wire``); None means the own name is one."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[str, ...] = ()
    wire: str | None = None

    @property
    def wire_name(self) -> str:
        return self.wire or self.name


def to_wire(params: tuple[Param, ...], values: dict[str, Any]) -> dict[str, Any]:
    """A candidate's tuned values under their wire names (other keys unchanged)."""
    names = {p.name: p.wire_name for p in params}
    return {names.get(k, k): v for k, v in values.items()}


def from_wire(params: tuple[Param, ...], hp: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as a job receives them -> under the candidate's own names (other keys unchanged)."""
    names = {p.wire_name: p.name for p in params if p.wire}
    return {names.get(k, k): v for k, v in hp.items()}


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
    """The metric's name in an objective line (XGBoost's evaluation log: ``validation-rmse``) for a task."""
    return "validation-rmse" if task == "rul_regression" else "validation-aucpr"


def tuning_metric(task: str) -> str:
    """The tuning objective: the built-in XGBoost algorithm's documented metric (``validation:rmse``,
    ``validation:aucpr``; xgboost-tuning.html), which the service reads from objective lines with its
    own regex (``OBJECTIVE_REGEX``), so a tuning job needs no MetricDefinitions."""
    return metric_name(task).replace("-", ":", 1)


#: the built-in algorithm's regex for ``tuning_metric`` (aws/sagemaker-xgboost-container
#: algorithm_mode/metrics.py); ``#011`` is the tab of XGBoost's log line as SageMaker's log reader sees it
OBJECTIVE_REGEX = r".*\[[0-9]+\].*#011{metric}:(\S+)"
#: what starts the last objective line, the value of the finished fit (local tuning tells it from the
#: intermediate ones by it; the built-in regex allows text before the ``[round]``)
FINAL = "final"


def objective_line(task: str, value: float, step: int, final: bool = False) -> str:
    """An objective line in XGBoost's evaluation-log format, ``[25]\\tvalidation-rmse:12.345678``;
    the last one of a job starts ``final ``. Both match ``OBJECTIVE_REGEX``."""
    return f"{FINAL + ' ' if final else ''}[{step}]\t{metric_name(task)}:{value:.6f}"
