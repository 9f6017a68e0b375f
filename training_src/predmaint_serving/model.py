"""The loaded model: predictor, fitted feature spec, metadata, and the fast paths built at load time."""

from __future__ import annotations

import hashlib
import json
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import F


@dataclass
class Model:
    """A loaded model: predictor, fitted feature spec and metadata."""

    spec: F.FeatureSpec
    meta: dict[str, Any]
    booster: Any = None  # xgboost.Booster
    linear: Any = None  # predictors.Linear (train.LinearModel's JSON weights)
    version: str = ""
    required: list[str] = field(default_factory=list)
    threshold: float = 0.5
    getter: Any = None  # operator.itemgetter(*required): the fast request parser (window profiles)
    forest: Any = None  # predictors.NumpyForest: NumPy evaluation of the booster's trees for small requests
    compiled: Any = None  # predictors.CompiledForest: forest.c via ctypes, every request size
    reader: Any = None  # reader.RequestReader: request.c + features.c via ctypes, body -> features

    @property
    def is_regression(self) -> bool:
        return self.spec.task == "rul_regression"


def set_inputs(model: Model) -> None:
    """The numeric fields a request must carry (``model.required``: time first, then settings,
    kept sensors and derived-feature inputs; row-wise profiles: every sensor) and, for window
    profiles, the ``itemgetter`` the fast parser pulls them with."""
    spec = model.spec
    need = []
    if spec.time_column:
        need.append(spec.time_column)
    need += list(spec.setting_columns) + list(spec.sensors)
    for d_ in spec.derived:
        need += [c for c in d_["columns"] if c not in need]
    if not spec.window_sizes:  # row-wise profiles: every sensor column is an input
        need += [c for c in spec.profile_obj.sensor_columns if c not in need]
    model.required = need
    if spec.window_sizes and spec.time_column and len(need) >= 2:
        model.getter = operator.itemgetter(*need)


def for_spec(spec: F.FeatureSpec) -> Model:
    """A model with only what reading requests needs (no predictor): reader tests, fleet tools."""
    model = Model(spec=spec, meta={})
    set_inputs(model)
    return model


def load(model_dir: str | os.PathLike) -> Model:
    """``model_fn``: ``xgboost-model`` or ``linear-model.json`` plus ``feature_spec.json`` (and
    ``model_meta.json``) from ``model_dir``, with the fastest predictor and request reader that
    load and pass their self-checks. Raises on a missing or corrupt artifact."""
    from . import predictors
    from . import reader as reader_mod

    d = Path(model_dir)
    spec = F.FeatureSpec.from_json((d / "feature_spec.json").read_text())
    meta = json.loads((d / "model_meta.json").read_text()) if (d / "model_meta.json").exists() else {}
    model = Model(spec=spec, meta=meta)
    if (d / "xgboost-model").exists():
        import xgboost as xgb

        raw = (d / "xgboost-model").read_bytes()
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        # one thread per worker: workers, not threads, use the cores (no oversubscription)
        booster.set_param({"nthread": int(os.environ.get("PREDMAINT_PREDICT_THREADS", "1"))})
        if booster.num_features() != len(spec.feature_names):
            raise ValueError(f"model has {booster.num_features()} features, spec has {len(spec.feature_names)}")
        model.booster = booster
    elif (d / "linear-model.json").exists():
        raw = (d / "linear-model.json").read_bytes()
        model.linear = predictors.Linear(json.loads(raw))
        if len(model.linear.coef) != len(spec.feature_names):
            raise ValueError("linear model and feature spec disagree on the number of features")
    else:
        raise FileNotFoundError(f"{d}: neither xgboost-model nor linear-model.json")
    model.version = os.environ.get("PREDMAINT_MODEL_VERSION") or meta.get("model_version") or \
        f"{meta.get('algorithm', 'model')}-{hashlib.sha256(raw).hexdigest()[:12]}"
    set_inputs(model)
    if model.booster is not None and os.environ.get("PREDMAINT_FOREST", "1") != "0":
        # fastest first: the compiled walker; else NumPy for small requests; else the booster
        if os.environ.get("PREDMAINT_COMPILED_FOREST", "1") != "0":
            model.compiled = predictors.CompiledForest.from_booster(model.booster)
        if model.compiled is None:
            model.forest = predictors.NumpyForest.from_booster(model.booster)
    model.threshold = float(meta.get("threshold") or 0.5)
    model.reader = reader_mod.RequestReader.for_model(model)
    return model
