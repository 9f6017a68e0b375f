"""The one hyperparameter search space, used by the SageMaker tuning job and by local Optuna tuning.

Each candidate algorithm has fixed hyperparameters (``static``) and tuned ranges. Names are the
``--name value`` CLI arguments that ``train.py`` accepts. ``sagemaker_parameter_ranges`` renders
the ranges as a CreateHyperParameterTuningJob ``ParameterRanges`` object; ``suggest`` asks an Optuna
trial for values from the same ranges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "int", "float" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[str, ...] = ()


_XGB = (
    Param("num_round", "int", 150, 800, log=True),
    Param("max_depth", "int", 3, 8),  # C-MAPSS prefers 4-6, AI4I 6-8
    Param("eta", "float", 0.02, 0.15, log=True),
    Param("min_child_weight", "float", 0.5, 64.0, log=True),  # AI4I wants <= 1, C-MAPSS 8-32
    Param("subsample", "float", 0.6, 1.0),
    Param("colsample_bytree", "float", 0.4, 1.0),
    Param("lambda", "float", 1e-3, 30.0, log=True),
    Param("alpha", "float", 1e-3, 10.0, log=True),
    Param("max_bin", "int", 64, 1024, log=True),  # AI4I's threshold rules need fine bins
)
_LINEAR = (Param("alpha", "float", 1e-3, 1e3, log=True),)

#: candidate algorithm -> its tuned ranges. Each becomes one SageMaker training job definition.
SEARCH_SPACE: dict[str, tuple[Param, ...]] = {"xgboost": _XGB, "linear": _LINEAR}
ALGORITHMS: tuple[str, ...] = tuple(SEARCH_SPACE)


def static_hyperparameters(algorithm: str, profile: Any) -> dict[str, str]:
    """Hyperparameters that are fixed for a candidate (SageMaker passes every value as a string).

    ``profile`` is the run's validated ``profiles.Profile`` (its name, subset and task; a user's
    profile file is not looked up by name, so its task decides as a shipped profile's does).
    """
    if algorithm not in SEARCH_SPACE:
        raise ValueError(f"unknown algorithm {algorithm!r}; candidates are {list(ALGORITHMS)}")
    out = {"algorithm": algorithm, "profile": profile.name}
    if profile.subset:
        out["subset"] = profile.subset
    if profile.is_regression:
        out["row_stride"] = "3"  # trials train on every 3rd reading per asset; train.py's refit uses all
    else:
        out["cv_folds"] = "5"  # row-wise labels: trials score 5-fold out-of-fold PR-AUC (robust objective)
    return out


def sagemaker_parameter_ranges(algorithm: str) -> dict[str, list[dict[str, str]]]:
    """ParameterRanges for a training job definition (HyperParameterTuningJob API shape)."""
    ranges: dict[str, list[dict[str, str]]] = {
        "IntegerParameterRanges": [], "ContinuousParameterRanges": [], "CategoricalParameterRanges": []
    }
    for p in SEARCH_SPACE[algorithm]:
        if p.kind == "categorical":
            ranges["CategoricalParameterRanges"].append({"Name": p.name, "Values": list(p.choices)})
            continue
        key = "IntegerParameterRanges" if p.kind == "int" else "ContinuousParameterRanges"
        low = str(int(p.low)) if p.kind == "int" else repr(float(p.low))
        high = str(int(p.high)) if p.kind == "int" else repr(float(p.high))
        ranges[key].append({"Name": p.name, "MinValue": low, "MaxValue": high,
                            "ScalingType": "Logarithmic" if p.log else "Linear"})
    return {k: v for k, v in ranges.items() if v}


def suggest(trial: Any, algorithm: str) -> dict[str, Any]:
    """Ask an Optuna trial for one value per tuned parameter of ``algorithm``."""
    values: dict[str, Any] = {}
    for p in SEARCH_SPACE[algorithm]:
        key = f"{algorithm}.{p.name}"
        if p.kind == "int":
            values[p.name] = trial.suggest_int(key, int(p.low), int(p.high), log=p.log)
        elif p.kind == "float":
            values[p.name] = trial.suggest_float(key, p.low, p.high, log=p.log)
        else:
            values[p.name] = trial.suggest_categorical(key, list(p.choices))
    return values


def to_cli_args(hyperparameters: dict[str, Any]) -> list[str]:
    """``{"eta": 0.1}`` -> ``["--eta", "0.1"]``, the way SageMaker passes hyperparameters to scripts."""
    args: list[str] = []
    for k, v in hyperparameters.items():
        args += [f"--{k}", str(v)]
    return args


def encode(value: Any) -> str:
    """A hyperparameter value as the SageMaker SDK (and the prepare Lambda's plan) sends it: strings
    JSON-encoded, everything else ``str``."""
    return json.dumps(value) if isinstance(value, str) else str(value)


def script_arguments(hyperparameters: dict[str, str]) -> list[str]:
    """Planned hyperparameters (SageMaker's encoding) -> the script's ``--name value`` arguments, as the
    SageMaker training toolkit turns hyperparameters.json into a command line: each value JSON-decoded
    where it is JSON, the toolkit's own ``sagemaker_*`` entries and the tuner's ``_tuning_*`` left out."""
    decoded: dict[str, Any] = {}
    for k, v in hyperparameters.items():
        if k.startswith(("sagemaker_", "_tuning")):
            continue
        try:
            decoded[k] = json.loads(v)
        except (TypeError, ValueError):
            decoded[k] = v
    return to_cli_args(decoded)
