"""The one hyperparameter search space, used by the SageMaker tuning job and by local Optuna tuning.

Each candidate algorithm (``candidates/``: one module each) has tuned ranges (its ``PARAMS``) and fixed
hyperparameters (``static``). Names are the
``--name value`` CLI arguments that ``train.py`` accepts; tuned ranges travel under the built-in XGBoost
algorithm's tunable names (``Param.wire_name``), which train.py maps back to the candidate's own. ``sagemaker_parameter_ranges`` renders
the ranges as a CreateHyperParameterTuningJob ``ParameterRanges`` object; ``suggest`` asks an Optuna
trial for values from the same ranges.
"""

from __future__ import annotations

import json
from typing import Any

from training_src.candidates import CANDIDATES, Param
from training_src.candidates.base import to_wire as _to_wire

#: candidate algorithm -> its tuned ranges (each candidate module's ``PARAMS``). Each becomes one
#: SageMaker training job definition.
SEARCH_SPACE: dict[str, tuple[Param, ...]] = {name: c.PARAMS for name, c in CANDIDATES.items()}
ALGORITHMS: tuple[str, ...] = tuple(SEARCH_SPACE)

__all__ = ["ALGORITHMS", "SEARCH_SPACE", "Param", "encode", "sagemaker_parameter_ranges", "script_arguments",
           "static_hyperparameters", "suggest", "to_cli_args", "to_wire", "tuned_algorithms"]


def tuned_algorithms(training_instances: int = 1) -> tuple[str, ...]:
    """The candidates a tuning job tries when its trials and the refit run on ``training_instances`` hosts
    (``predmaint.training.instance_count``), in ``ALGORITHMS`` order.

    One host: every candidate. Several: only those that the hosts fit together as one collective fit
    (a candidate's ``DISTRIBUTED``; XGBoost). A candidate without one is fitted on the first host over
    every host's rows, so on a fleet spread over several hosts because it is too large for one, that
    host would need what one instance needs for the whole fleet. The state machine's tuning job
    definitions and the prepare Lambda's plan both come from here, so they always name the same candidates.
    """
    if isinstance(training_instances, bool) or not isinstance(training_instances, int) or training_instances < 1:
        raise ValueError(f"training_instances must be an integer >= 1, got {training_instances!r}")
    if training_instances == 1:
        return ALGORITHMS
    return tuple(name for name in ALGORITHMS if CANDIDATES[name].DISTRIBUTED)


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
        out["row_stride"] = "3"  # trials and the refit's calibration folds read every 3rd reading per asset; its final fit all
    else:
        out["cv_folds"] = "5"  # row-wise labels: trials score 5-fold out-of-fold PR-AUC (robust objective)
    return out


def sagemaker_parameter_ranges(algorithm: str) -> dict[str, list[dict[str, str]]]:
    """ParameterRanges for a training job definition (HyperParameterTuningJob API shape)."""
    ranges: dict[str, list[dict[str, str]]] = {
        "IntegerParameterRanges": [], "ContinuousParameterRanges": [], "CategoricalParameterRanges": []
    }
    for p in SEARCH_SPACE[algorithm]:  # under the wire names (candidates/base.py TUNABLE_XGBOOST_NAMES)
        if p.kind == "categorical":
            ranges["CategoricalParameterRanges"].append({"Name": p.wire_name, "Values": list(p.choices)})
            continue
        key = "IntegerParameterRanges" if p.kind == "int" else "ContinuousParameterRanges"
        low = str(int(p.low)) if p.kind == "int" else repr(float(p.low))
        high = str(int(p.high)) if p.kind == "int" else repr(float(p.high))
        ranges[key].append({"Name": p.wire_name, "MinValue": low, "MaxValue": high,
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


def to_wire(algorithm: str, values: dict[str, Any]) -> dict[str, Any]:
    """``suggest``'s values (the candidate's own names) under the names a tuning job gives them, so local
    tuning calls train.py exactly as SageMaker does (train.py maps them back)."""
    return _to_wire(SEARCH_SPACE[algorithm], values)


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
