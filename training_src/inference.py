"""Inference handlers: the code that runs in the SageMaker XGBoost container and the local server.

The four SageMaker functions (``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``) implement
the endpoint contract in DESIGN.md. ``handle`` chains them and maps every bad input to a 4xx JSON
error (never a 500): the local server calls it directly; in the SageMaker container ``transform_fn``
(which the container prefers over the four functions when present) calls it and returns a response
with the right status code.

Requests (regression profiles)::

    {"instances": [{"asset_id": "engine-7", "readings": [{"cycle": 1, "setting_1": ..., ...}]}]}

Readings may come in any order; they are sorted by time and only the trailing history the feature
spec needs is used. Classification profiles take one row of the profile's columns per instance.
``explain=true`` (header ``X-Amzn-SageMaker-Custom-Attributes`` locally, or ``"explain": true`` in
the body, which also works in the container) adds the top feature contributions per prediction.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    from . import features as F
except ImportError:  # SageMaker container / local server: code/ is on sys.path
    import features as F

try:  # orjson is much faster; the SageMaker container may not have it
    import orjson

    def _loads(body: bytes | str) -> Any:
        return orjson.loads(body)

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
except ImportError:  # pragma: no cover - exercised in the container
    def _reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def _loads(body: bytes | str) -> Any:
        return json.loads(body, parse_constant=_reject_constant)

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=float).encode()

MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_INSTANCES = int(os.environ.get("PREDMAINT_MAX_INSTANCES", "1000"))
MAX_READINGS = int(os.environ.get("PREDMAINT_MAX_READINGS", "10000"))
TOP_CONTRIBUTIONS = 5
JSON = "application/json"


class InferenceError(Exception):
    """A request the endpoint refuses; ``status_code`` is the HTTP status (4xx)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _bad(message: str) -> InferenceError:
    return InferenceError(400, message)


@dataclass
class Model:
    """A loaded model: predictor, fitted feature spec and metadata."""

    spec: F.FeatureSpec
    meta: dict[str, Any]
    booster: Any = None  # xgboost.Booster
    linear: Any = None  # train.LinearModel-compatible JSON weights
    version: str = ""
    required: list[str] = field(default_factory=list)
    threshold: float = 0.5

    @property
    def is_regression(self) -> bool:
        return self.spec.task == "rul_regression"


class _Linear:
    def __init__(self, doc: dict[str, Any]):
        self.mean = np.asarray(doc["mean"])
        self.scale = np.asarray(doc["scale"])
        self.coef = np.asarray(doc["coef"])
        self.intercept = float(doc["intercept"])
        self.logistic = doc["task"] == "failure_classification"

    def margin_contribs(self, X: np.ndarray) -> np.ndarray:
        return np.hstack([(X - self.mean) / self.scale * self.coef, np.full((len(X), 1), self.intercept)])

    def predict(self, X: np.ndarray) -> np.ndarray:
        m = ((X - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-m)) if self.logistic else m


def model_fn(model_dir: str) -> Model:
    """Load ``xgboost-model`` or ``linear-model.json`` plus ``feature_spec.json`` from ``model_dir``."""
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
        model.linear = _Linear(json.loads(raw))
        if len(model.linear.coef) != len(spec.feature_names):
            raise ValueError("linear model and feature spec disagree on the number of features")
    else:
        raise FileNotFoundError(f"{d}: neither xgboost-model nor linear-model.json")
    model.version = os.environ.get("PREDMAINT_MODEL_VERSION") or meta.get("model_version") or \
        f"{meta.get('algorithm', 'model')}-{hashlib.sha256(raw).hexdigest()[:12]}"
    prof = spec.profile_obj
    need = []
    if spec.time_column:
        need.append(spec.time_column)
    need += list(spec.setting_columns) + list(spec.sensors)
    for d_ in spec.derived:
        need += [c for c in d_["columns"] if c not in need]
    if not spec.window_sizes:  # row-wise profiles: every sensor column is an input
        need += [c for c in prof.sensor_columns if c not in need]
    model.required = need
    model.threshold = float(meta.get("threshold") or 0.5)
    return model


# ----------------------------------------------------------------------------------------------
# Request parsing and validation
# ----------------------------------------------------------------------------------------------
@dataclass
class Request:
    asset_ids: list[Any]
    columns: list[dict[str, np.ndarray]]  # per instance: column -> values (time-sorted)
    explain: bool = False


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _number(v: Any, where: str) -> float:
    if type(v) is float:
        if not math.isfinite(v):
            raise _bad(f"{where}: must be a finite number")
        return v
    if type(v) is int:
        f = float(v)
        if not math.isfinite(f):
            raise _bad(f"{where}: number out of range")
        return f
    kind = "null" if v is None else type(v).__name__
    raise _bad(f"{where}: expected a number, got {kind}")


def _parse_asset(inst: Any, i: int, model: Model) -> tuple[Any, dict[str, np.ndarray]]:
    where = f"instances[{i}]"
    if not isinstance(inst, dict):
        raise _bad(f"{where}: must be an object")
    asset = inst.get("asset_id", i)
    if not isinstance(asset, str | int) or isinstance(asset, bool):
        raise _bad(f"{where}.asset_id: must be a string or an integer")
    readings = inst.get("readings")
    if not isinstance(readings, list):
        raise _bad(f"{where}.readings: required, a list of readings")
    if not readings:
        raise _bad(f"{where}.readings: empty; send at least one reading")
    if len(readings) > MAX_READINGS:
        raise InferenceError(413, f"{where}.readings: {len(readings)} readings; at most {MAX_READINGS}")
    spec = model.spec
    tc = spec.time_column
    # keep only the trailing history needed, after ordering by time
    for j, r in enumerate(readings):
        if not isinstance(r, dict):
            raise _bad(f"{where}.readings[{j}]: must be an object")
    times = [_number(r.get(tc), f"{where}.readings[{j}].{tc}") for j, r in enumerate(readings)]
    order = sorted(range(len(readings)), key=times.__getitem__)
    for a, b in itertools.pairwise(order):
        if times[a] == times[b]:
            raise _bad(f"{where}.readings[{b}].{tc}: duplicate {tc} {times[b]:g}")
    keep = order[-spec.history_needed:]
    cols: dict[str, np.ndarray] = {tc: np.fromiter((times[j] for j in keep), float, len(keep))}
    for c in model.required:
        if c == tc:
            continue
        vals = []
        for j in keep:
            r = readings[j]
            if c not in r:
                raise _bad(f"{where}.readings[{j}].{c}: missing")
            vals.append(_number(r[c], f"{where}.readings[{j}].{c}"))
        cols[c] = np.asarray(vals, dtype=float)
    return asset, cols


def _parse_row(inst: Any, i: int, model: Model) -> tuple[Any, dict[str, np.ndarray]]:
    where = f"instances[{i}]"
    if not isinstance(inst, dict):
        raise _bad(f"{where}: must be an object of the profile's columns")
    asset = inst.get("asset_id", i)
    if not isinstance(asset, str | int) or isinstance(asset, bool):
        raise _bad(f"{where}.asset_id: must be a string or an integer")
    cols: dict[str, np.ndarray] = {}
    for c in model.required:
        if c not in inst:
            raise _bad(f"{where}.{c}: missing")
        cols[c] = np.asarray([_number(inst[c], f"{where}.{c}")])
    for c, levels in model.spec.categorical.items():
        v = inst.get(c)
        if v not in levels:
            raise _bad(f"{where}.{c}: must be one of {levels}, got {v!r}")
        cols[c] = np.asarray([v])
    return asset, cols


def _explain_requested(custom_attributes: str | None) -> bool:
    if not custom_attributes:
        return False
    for part in custom_attributes.replace(";", ",").split(","):
        k, _, v = part.partition("=")
        if k.strip().lower() == "explain" and v.strip().lower() in ("true", "1", "yes"):
            return True
    return False


def input_fn(request_body: bytes | str, request_content_type: str | None,
             custom_attributes: str | None = None, model: Model | None = None) -> dict[str, Any]:
    """Decode and structurally check a request body. Returns the decoded document.

    Per-field validation needs the model's spec, so it happens in ``predict_fn``; the parsed
    document keeps the explain flag under ``"_explain"``.
    """
    if _media_type(request_content_type) != JSON:
        raise InferenceError(415, f"unsupported Content-Type {request_content_type!r}; use {JSON}")
    if len(request_body) > MAX_BODY_BYTES:
        raise InferenceError(413, f"body of {len(request_body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        doc = _loads(request_body)
    except (ValueError, TypeError, RecursionError) as exc:
        raise _bad(f"body: malformed JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(doc, dict):
        raise _bad("body: must be a JSON object with an 'instances' list")
    instances = doc.get("instances")
    if not isinstance(instances, list):
        raise _bad("instances: required, a list")
    if not instances:
        raise _bad("instances: empty; send at least one instance")
    if len(instances) > MAX_INSTANCES:
        raise InferenceError(413, f"instances: {len(instances)} instances; at most {MAX_INSTANCES} per request")
    explain = doc.get("explain", False)
    if not isinstance(explain, bool):
        raise _bad("explain: must be true or false")
    doc["_explain"] = explain or _explain_requested(custom_attributes)
    return doc


def parse_instances(doc: dict[str, Any], model: Model) -> Request:
    """Validate every instance against the model's feature spec."""
    parse = _parse_asset if model.spec.window_sizes else _parse_row
    ids, cols = [], []
    for i, inst in enumerate(doc["instances"]):
        a, c = parse(inst, i, model)
        ids.append(a)
        cols.append(c)
    return Request(ids, cols, bool(doc.get("_explain")))


def features_matrix(req: Request, model: Model) -> np.ndarray:
    """(n_instances, n_features) float32 matrix, one row per instance (its last reading)."""
    X = np.empty((len(req.columns), len(model.spec.feature_names)), dtype=np.float32)
    for i, cols in enumerate(req.columns):
        X[i] = F.transform_asset(cols, model.spec)
    return X


def predict_fn(data: dict[str, Any] | Request, model: Model) -> dict[str, Any]:
    """Features + prediction for every instance; returns the response document."""
    req = data if isinstance(data, Request) else parse_instances(data, model)
    X = features_matrix(req, model)
    if model.booster is not None:
        p = model.booster.inplace_predict(X)
    else:
        p = model.linear.predict(X.astype(np.float64))
    p = np.asarray(p, dtype=float)
    preds: list[dict[str, Any]] = []
    if model.is_regression:
        cap = model.spec.label_cap
        p = np.clip(p, 0.0, cap if cap else None)
        for a, v in zip(req.asset_ids, p, strict=True):
            preds.append({"asset_id": a, "rul": round(float(v), 3)})
    else:
        for a, v in zip(req.asset_ids, p, strict=True):
            preds.append({"asset_id": a, "failure_probability": round(float(v), 6),
                          "failure": bool(v >= model.threshold)})
    if req.explain:
        contribs = explain(model, X)
        for pred, row in zip(preds, contribs, strict=True):
            pred["contributions"] = row
    return {"predictions": preds, "model_version": model.version}


def explain(model: Model, X: np.ndarray, top: int = TOP_CONTRIBUTIONS) -> list[list[dict[str, Any]]]:
    """Top ``top`` feature contributions (SHAP values for trees, coef*x for linear) per row."""
    if model.booster is not None:
        import xgboost as xgb

        c = model.booster.predict(xgb.DMatrix(X, feature_names=model.spec.feature_names), pred_contribs=True)
    else:
        c = model.linear.margin_contribs(X.astype(np.float64))
    names = model.spec.feature_names
    out = []
    for row in c[:, :-1]:
        idx = np.argsort(-np.abs(row))[:top]
        out.append([{"feature": names[j], "value": round(float(X[len(out), j]), 6),
                     "contribution": round(float(row[j]), 6)} for j in idx])
    return out


def output_fn(prediction: dict[str, Any], accept: str | None) -> tuple[bytes, str]:
    """Serialise the response as JSON; any other Accept is refused with 406."""
    media = _media_type(accept)
    if media not in ("", "*/*", JSON, "application/*"):
        raise InferenceError(406, f"unsupported Accept {accept!r}; this endpoint answers {JSON}")
    return _dumps(prediction), JSON


def handle(model: Model, body: bytes, content_type: str | None, accept: str | None,
           custom_attributes: str | None = None) -> tuple[int, bytes, str]:
    """input_fn -> predict_fn -> output_fn with errors mapped to (status, JSON error, type)."""
    try:
        media = _media_type(accept)
        if media not in ("", "*/*", JSON, "application/*"):  # refuse before doing the work
            raise InferenceError(406, f"unsupported Accept {accept!r}; this endpoint answers {JSON}")
        doc = input_fn(body, content_type, custom_attributes)
        prediction = predict_fn(doc, model)
        out, ctype = output_fn(prediction, accept)
        return 200, out, ctype
    except InferenceError as exc:
        return exc.status_code, _dumps({"error": exc.message}), JSON


def transform_fn(model: Model, request_body: bytes, content_type: str, accept: str) -> Any:
    """SageMaker XGBoost container hook: the whole request with the right HTTP status."""
    status, body, ctype = handle(model, request_body, content_type, accept)
    if status == 200:
        return body, ctype
    try:  # the container's web framework response carries a status code
        from sagemaker_containers.beta.framework import worker

        return worker.Response(response=body, status=status, mimetype=ctype)
    except ImportError:
        return body, ctype
