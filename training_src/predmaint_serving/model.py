"""The loaded model: predictor, fitted feature spec, metadata, and the fast paths built at load time."""

from __future__ import annotations

import hashlib
import json
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_src import candidates
from training_src.candidates import pair

from . import F


@dataclass
class Model:
    """A loaded model: predictor, fitted feature spec and metadata."""

    spec: F.FeatureSpec
    meta: dict[str, Any]
    #: the candidate's loaded model (``candidates.<name>.load``): predict, contributions, importance
    predictor: Any = None
    version: str = ""
    required: list[str] = field(default_factory=list)
    threshold: float = 0.5
    getter: Any = None  # operator.itemgetter(*required): the fast request parser (window profiles)
    forest: Any = None  # predictors.NumpyForest: NumPy evaluation of the booster's trees for small requests
    compiled: Any = None  # predictors.CompiledForest / CompiledTrees: forest.c via ctypes, every request size
    reader: Any = None  # reader.RequestReader: request.c + features.c via ctypes, body -> features
    intervals: Any = None  # intervals.Calibration (model_meta.json "intervals"): RUL bounds, horizon probability

    @property
    def booster(self) -> Any:
        """The xgboost Booster (the tree walkers' source), None for other candidates and for a
        two-model artifact (``predictor`` is then a ``candidates.pair.Pair``)."""
        return getattr(self.predictor, "booster", None)

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


def _fast_paths(name: str, predictor: Any, spec: F.FeatureSpec) -> tuple[Any, Any]:
    """(compiled, forest) for a loaded predictor: the compiled walker of an xgboost booster (else its NumPy
    walk for small requests) or of an hgb model, None where it does not load or pass its self-check. A
    ``pair.Pair``: a pair of each kind, built for both models, kept only when both built (else that kind
    is None for the pair and the predictor serves)."""
    from . import predictors

    if isinstance(predictor, pair.Pair):
        built = [_fast_paths(name, m, spec) for m in (predictor.window, predictor.life)]
        return tuple(pair.Pair(w, lf, spec) if w is not None and lf is not None else None
                     for w, lf in zip(*built, strict=True))  # type: ignore[return-value]
    compiled = forest = None
    booster = getattr(predictor, "booster", None)
    if booster is not None and os.environ.get("PREDMAINT_FOREST", "1") != "0":
        # fastest first: the compiled walker; else NumPy for small requests; else the booster
        if os.environ.get("PREDMAINT_COMPILED_FOREST", "1") != "0":
            compiled = predictors.CompiledForest.from_booster(booster)
        if compiled is None:
            forest = predictors.NumpyForest.from_booster(booster)
    elif name == "hgb" and os.environ.get("PREDMAINT_COMPILED_FOREST", "1") != "0":
        compiled = predictors.CompiledTrees.from_trees(predictor)  # else its NumPy walk serves
    return compiled, forest


def load(model_dir: str | os.PathLike) -> Model:
    """``model_fn``: a candidate's model file (``candidates``) plus ``feature_spec.json`` (and
    ``model_meta.json``) from ``model_dir``, with the fastest predictor and request reader that
    load and pass their self-checks. Raises on a missing or corrupt artifact."""
    from . import reader as reader_mod

    d = Path(model_dir)
    spec = F.FeatureSpec.from_json((d / "feature_spec.json").read_text())
    meta = json.loads((d / "model_meta.json").read_text()) if (d / "model_meta.json").exists() else {}
    model = Model(spec=spec, meta=meta)
    found = [c for c in candidates.CANDIDATES.values() if (d / c.MODEL_FILE).exists()]
    if not found:
        files = " nor ".join(c.MODEL_FILE for c in candidates.CANDIDATES.values())
        raise FileNotFoundError(f"{d}: neither {files}")
    raw = (d / found[0].MODEL_FILE).read_bytes()
    model.predictor = pair.load(found[0], d, spec)  # a pair.Pair when the artifact holds a life model
    if isinstance(model.predictor, pair.Pair):
        raw += (d / pair.LIFE_MODEL_DIR / found[0].MODEL_FILE).read_bytes()
    model.version = os.environ.get("PREDMAINT_MODEL_VERSION") or meta.get("model_version") or \
        f"{meta.get('algorithm', 'model')}-{hashlib.sha256(raw).hexdigest()[:12]}"
    set_inputs(model)
    model.compiled, model.forest = _fast_paths(found[0].NAME, model.predictor, spec)
    model.threshold = float(meta.get("threshold") or 0.5)
    if meta.get("intervals") is not None and model.is_regression:
        from . import intervals

        model.intervals = intervals.Calibration.from_doc(meta["intervals"])  # a corrupt one fails the load
    model.reader = reader_mod.RequestReader.for_model(model)
    return model
