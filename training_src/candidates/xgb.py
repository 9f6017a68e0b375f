"""Candidate ``xgboost``: gradient-boosted trees (XGBoost ``hist``), saved in XGBoost's own format.

Serving builds its exact fast paths (the compiled and NumPy tree walkers,
``predmaint_serving/predictors.py``) from the loaded ``booster``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import Param, number, objective_line

NAME = "xgboost"
MODEL_FILE = "xgboost-model"
DISTRIBUTED = True  # every host joins one collective fit (distributed.py)
ROW_DTYPE = "float32"  # QuantileDMatrix and inplace_predict read float32 rows as they are
PARAMS = (
    Param("num_round", "int", 150, 800, log=True),
    Param("max_depth", "int", 3, 8),  # C-MAPSS prefers 4-6, AI4I 6-8
    Param("eta", "float", 0.02, 0.15, log=True),
    Param("min_child_weight", "float", 0.5, 64.0, log=True),  # AI4I wants <= 1, C-MAPSS 8-32
    Param("subsample", "float", 0.6, 1.0),
    Param("colsample_bytree", "float", 0.4, 1.0),
    Param("lambda", "float", 1e-3, 30.0, log=True),
    Param("alpha", "float", 1e-3, 10.0, log=True),
    # AI4I's threshold rules need fine bins. max_bin is not one of the built-in algorithm's tunable
    # hyperparameters, so its range travels as the (otherwise unused) tunable max_delta_step
    Param("max_bin", "int", 64, 1024, log=True, wire="max_delta_step"),
)
#: the first trial of local tuning
START: dict[str, Any] = {"num_round": 400, "max_depth": 5, "eta": 0.05, "min_child_weight": 8.0, "subsample": 0.8,
                         "colsample_bytree": 0.5, "lambda": 1.0, "alpha": 0.01, "max_bin": 256}
#: values of hyperparameters a job does not set (XGBoost's own defaults, but fewer rounds)
DEFAULTS: dict[str, Any] = {"num_round": 300, "max_depth": 6, "eta": 0.3, "min_child_weight": 1.0,
                            "subsample": 1.0, "colsample_bytree": 1.0, "lambda": 1.0, "alpha": 0.0,
                            "max_bin": 256}


def booster_params(hp: dict[str, str], task: str, nthread: int, seed: int) -> tuple[dict[str, Any], int]:
    """XGBoost booster parameters and number of rounds from string hyperparameters."""
    merged = {**DEFAULTS, **{k: v for k, v in hp.items() if k in DEFAULTS}}
    params = {
        "max_depth": number(merged, "max_depth", int, 1, 16),
        "eta": number(merged, "eta", float, 1e-4, 1.0),
        "min_child_weight": number(merged, "min_child_weight", float, 0.0, 1e4),
        "subsample": number(merged, "subsample", float, 0.05, 1.0),
        "colsample_bytree": number(merged, "colsample_bytree", float, 0.05, 1.0),
        "lambda": number(merged, "lambda", float, 0.0, 1e4),
        "alpha": number(merged, "alpha", float, 0.0, 1e4),
        "tree_method": "hist",
        # fine bins let trees place splits on sharp physical thresholds (AI4I failure rules)
        "max_bin": number(merged, "max_bin", int, 16, 4096),
        "nthread": nthread,
        "seed": seed,
        "objective": "reg:squarederror" if task == "rul_regression" else "binary:logistic",
        "eval_metric": "rmse" if task == "rul_regression" else "aucpr",
    }
    return params, number(merged, "num_round", int, 1, 20000)


def fit(X: Any, y: Any, task: str, hp: dict[str, str], nthread: int, seed: int, Xv: Any = None, yv: Any = None,
        names: list[str] | None = None, report_every: int = 25, checkpoints: Any = None) -> tuple[Any, Any]:
    """Boost; print the objective on validation data every ``report_every`` rounds (pruning reads it).

    ``checkpoints`` (a ``checkpoints.Checkpoints``): write a checkpoint every few rounds, and continue
    from the newest one of this same fit if there is one (a restarted spot job).
    Returns (booster, validation predictions or None).
    """
    import xgboost as xgb

    params, rounds = booster_params(hp, task, nthread, seed)
    # QuantileDMatrix keeps only the histogram bins (1 byte per value) instead of a float copy of X
    # (8 bytes per value as DMatrix's sparse page) and grows the same trees: ``hist`` reads the bins
    # alone, and the bins are cut from the same quantile sketch (the saved model's bytes are the same)
    dtrain = xgb.QuantileDMatrix(X, label=y, feature_names=names, nthread=nthread, max_bin=params["max_bin"])
    evals, callbacks = [], []
    if Xv is not None:
        dval = xgb.QuantileDMatrix(Xv, label=yv, feature_names=names, nthread=nthread, ref=dtrain,
                                   max_bin=params["max_bin"])
        evals = [(dval, "validation")]

        class Report(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log):
                if (epoch + 1) % report_every == 0 and epoch + 1 < rounds:
                    value = evals_log["validation"][params["eval_metric"]][-1]
                    print(objective_line(task, value, epoch + 1), flush=True)
                return False

        callbacks = [Report()]
    start = None
    if checkpoints is not None:
        start = checkpoints.resume(params, rounds, X, y)
        callbacks.append(checkpoints.callback())
    done = start.num_boosted_rounds() if start is not None else 0
    booster = xgb.train(params, dtrain, rounds - done, evals=evals, callbacks=callbacks, verbose_eval=False,
                        xgb_model=start)
    pv = booster.inplace_predict(Xv) if Xv is not None else None
    return booster, pv


def predict(model: Any, X: Any) -> Any:
    return model.inplace_predict(X)


def save(model: Any, model_dir: Path) -> None:
    # the .ubj suffix makes XGBoost write its binary format; the container expects the plain name
    model.save_model(str(model_dir / "xgboost-model.ubj"))
    os.replace(model_dir / "xgboost-model.ubj", model_dir / MODEL_FILE)


class Predictor:
    """The booster for serving: one thread per worker (workers, not threads, use the cores)."""

    def __init__(self, booster: Any, names: list[str]):
        self.booster, self.names = booster, names

    def predict(self, X: Any) -> Any:
        return self.booster.inplace_predict(X)

    def contributions(self, X: Any) -> Any:
        """SHAP values (TreeSHAP, margin space), bias last."""
        import xgboost as xgb

        return self.booster.predict(xgb.DMatrix(X, feature_names=self.names), pred_contribs=True)

    def importance(self) -> Any:
        """Total gain per feature."""
        import numpy as np

        gain = self.booster.get_score(importance_type="total_gain")
        return np.array([gain.get(n, 0.0) for n in self.names])


def load(model_dir: Path, spec: Any) -> Predictor:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray((Path(model_dir) / MODEL_FILE).read_bytes()))
    booster.set_param({"nthread": int(os.environ.get("PREDMAINT_PREDICT_THREADS", "1"))})
    if booster.num_features() != len(spec.feature_names):
        raise ValueError(f"model has {booster.num_features()} features, spec has {len(spec.feature_names)}")
    return Predictor(booster, spec.feature_names)
