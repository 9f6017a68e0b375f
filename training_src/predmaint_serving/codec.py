"""The request codec: what a request is, how it is refused, and what an answer looks like.

This is the one definition of the endpoint's wire format (docs/contract.md, docs/openapi.yaml).
Requests (regression profiles)::

    {"instances": [{"asset_id": "engine-7", "readings": [{"cycle": 1, "setting_1": ..., ...}]}]}

Readings may come in any order; they are sorted by time and only the trailing history the feature
spec needs is used. Classification profiles take one row of the profile's columns per instance.
``explain`` (the body's ``"explain": true`` or the header ``X-Amzn-SageMaker-Custom-Attributes:
explain=true``) adds the top feature contributions per prediction. RUL answers carry an interval
(``rul_lower``, ``rul_upper``, ``interval_level``) when the model was calibrated (``intervals.py``);
``horizon`` (cycles, for the whole request or per instance) adds ``failure_probability``, the
probability that the RUL is at most the horizon (``horizons``). An instance's ``life`` (``{}`` to start,
then the ``life`` its previous answer returned) carries the asset's life summary when the model reads
one: the answer uses it and returns it updated with the readings sent. Its JSON form is this module's
(``parse_life``, ``life_document``); the sums are ``features.life``'s.

``REQUEST_FIELDS`` and ``INSTANCE_FIELDS`` list every key a body and an instance may carry that this
module reads; the compiled reader declines any other key, and refuses to load unless its own lists are
these (``reader.py``), so a field added here is never silently skipped on the fast path.

Every refusal is an ``InferenceError`` (status 400/406/413/415, message "<what and where>"); its
JSON form is ``{"error": message}``. ``read`` turns an accepted body into ``Features`` (asset ids
and the float32 feature matrix): through the compiled reader when the model has one and it takes
the body (``reader.py``: it only takes bodies this module accepts, gives bit-identical features,
and is checked against ``read_python`` every time a model loads), else through ``read_python``,
which also names the field of every refusal.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import F, intervals

JSON = "application/json"
MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints refuse payloads over 6 MB
MAX_INSTANCES = int(os.environ.get("PREDMAINT_MAX_INSTANCES", "1000"))
MAX_READINGS = int(os.environ.get("PREDMAINT_MAX_READINGS", "10000"))
#: the keys of a request body this module reads (``decode``, ``horizons``), and of an instance (a
#: regression profile's; readings' own keys are the model's columns, and keys a model does not use are ignored)
REQUEST_FIELDS = ("instances", "explain", "horizon")
INSTANCE_FIELDS = ("asset_id", "readings", "horizon", "life")
#: appended to a non-finite/out-of-range value's message when only the lenient parser read the body
NON_FINITE_NOTE = " (NaN, Infinity and numbers beyond the float range are malformed JSON)"


class InferenceError(Exception):
    """A request the endpoint refuses; ``status_code`` is the HTTP status (4xx)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def bad(message: str) -> InferenceError:
    return InferenceError(400, message)


# ------------------------------------------------------------------------------------------ JSON
def _lenient_loads(body: bytes) -> Any:
    """The stdlib parser, which reads NaN, Infinity and 1e999 (as inf) instead of refusing them.

    Used only after the strict parser refused a body, so validation can name the field holding the
    non-finite number (``instances[0].readings[3].sensor_2: must be a finite number``).
    """
    return json.loads(body)


#: orjson reads integers from -2**63 to 2**64-1 as int, larger ones as float (and refuses what overflows a
#: float); the stdlib parser below reads them the same way, so both paths see the same document
_INT_RANGE = (-(2**63), 2**64 - 1)
#: a \\uD800-\\uDFFF escape: maybe a lone surrogate, which orjson refuses and the stdlib parser reads
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F][0-9a-fA-F]{2}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):  # 1e999 parses to inf in the stdlib: refuse it like orjson does
        raise ValueError(f"number {text} is out of range")
    return v


def _ranged_int(text: str) -> int | float:
    v = int(text)
    if _INT_RANGE[0] <= v <= _INT_RANGE[1]:
        return v
    return _finite_float(text)  # beyond 64 bits: a float, as orjson reads it


def _stdlib_loads(body: bytes) -> Any:
    """Strict RFC 8259 JSON with the stdlib, reading what orjson reads and refusing what it refuses (no
    NaN/Infinity, no numbers beyond the float range, no lone surrogates, UTF-8 only)."""
    doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float,
                     parse_int=_ranged_int)
    if _SURROGATE_ESCAPE.search(body):  # rare: check that every escaped surrogate was one of a pair
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("lone surrogate in a string") from None
    return doc


def malformed_reason(body: bytes) -> str:
    """Why a body that a strict parser refused is not JSON, in the stdlib parser's words: the same text
    whichever parser refused it (orjson locally, the stdlib in the container), so both answer alike."""
    try:
        _stdlib_loads(body)
    except RecursionError:
        return "depth limit exceeded"
    except UnicodeDecodeError as exc:
        return f"not UTF-8: byte {exc.start}"
    except (ValueError, TypeError) as exc:
        return str(exc).splitlines()[0][:120]
    return "not valid JSON"


try:  # orjson parses ~5x faster; the SageMaker XGBoost container does not have it
    import orjson

    def loads(body: bytes) -> Any:
        """Strict RFC 8259 JSON (no NaN/Infinity, no numbers beyond the float range)."""
        return orjson.loads(body)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
except ImportError:  # the container's Python: the stdlib, made as strict as orjson
    loads = _stdlib_loads

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=float).encode()


def error_body(message: str) -> bytes:
    """The JSON body of every refusal."""
    return dumps({"error": message})


# ------------------------------------------------------------------------------------------ headers
def media_type(value: str | None) -> str:
    """``"application/json; charset=utf-8"`` -> ``"application/json"`` (lower case)."""
    return (value or "").split(";")[0].strip().lower()


def _quality(params: list[str]) -> float | None:
    """The ``q`` weight of a media range's parameters (RFC 9110 12.4.2: 0 to 1, at most three decimals;
    absent: 1); None when it is malformed, and then the range is ignored."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        value = value.strip()
        try:
            q = float(value)
        except ValueError:
            return None
        # "0", "0.5", "1.000": digits only (float() would also take "nan", "1e-1", " 1_0")
        if not (0.0 <= q <= 1.0) or not value.replace(".", "", 1).isdigit() or len(value.partition(".")[2]) > 3:
            return None
        return q
    return 1.0


def json_quality(accept: str | None) -> float:
    """How much ``accept`` (an Accept header) wants ``application/json``, from 0 to 1 (RFC 9110 12.5.1).

    Each comma-separated media range may carry parameters and a ``q`` weight; the range with the highest
    precedence that matches JSON decides (``application/json`` over ``application/*`` over ``*/*``, a
    range with parameters over one without), so ``text/html, application/json;q=0.9`` is 0.9 and
    ``application/json;q=0, */*`` is 0. No header (or an empty one) accepts anything: 1. Malformed
    ranges are ignored, as RFC 9110 lets a recipient do.
    """
    if accept is None or not accept.strip():
        return 1.0
    best: tuple[int, int, float] | None = None  # (specificity, has parameters, q)
    for media_range in accept.split(","):
        kind, *params = media_range.split(";")
        kind = kind.strip().lower()
        specificity = {JSON: 2, "application/*": 1, "*/*": 0}.get(kind)
        q = _quality(params)
        if specificity is None or q is None:
            continue
        extra = any(p.partition("=")[0].strip().lower() != "q" for p in params if p.strip())
        rank = (specificity, int(extra), q)
        if best is None or rank[:2] > best[:2] or (rank[:2] == best[:2] and q > best[2]):
            best = rank
    return 0.0 if best is None else best[2]


def check_accept(accept: str | None) -> None:
    """406 unless the client accepts JSON (``json_quality`` above 0). The one Accept check of both paths
    (the local server's ``handle`` and the container's ``output_fn``)."""
    if json_quality(accept) <= 0.0:
        raise InferenceError(406, f"unsupported Accept {accept!r}; this endpoint answers {JSON}")


def explain_requested(custom_attributes: str | None) -> bool:
    """Whether ``X-Amzn-SageMaker-Custom-Attributes`` asks for explanations (``explain=true``)."""
    if not custom_attributes:
        return False
    for part in custom_attributes.replace(";", ",").split(","):
        k, _, v = part.partition("=")
        if k.strip().lower() == "explain" and v.strip().lower() in ("true", "1", "yes"):
            return True
    return False


def accept_body(body: bytes | str, content_type: str | None) -> bytes:
    """The request body as UTF-8 bytes after the media-type (415) and size (413) checks.

    ``str`` bodies are what the SageMaker container hands over for JSON content (sagemaker-containers
    decodes UTF-8 media types before calling ``input_fn``); they are encoded back so that one reader
    (and the same byte limit) serves both. A lone surrogate cannot come from a decoded body; it is
    kept (``surrogatepass``) and the strict parser then refuses the body as malformed JSON.
    """
    if media_type(content_type) != JSON:
        raise InferenceError(415, f"unsupported Content-Type {content_type!r}; use {JSON}")
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    elif not isinstance(body, bytes):
        body = bytes(body)
    if len(body) > MAX_BODY_BYTES:
        raise InferenceError(413, f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    return body


# ------------------------------------------------------------------------------------------ requests
@dataclass
class Request:
    """Validated instances: ids, and every instance's readings stacked as columns.

    ``columns`` maps column -> 1-D float array over all instances' readings (each instance's
    time-sorted), or is a ``features.ColumnMatrix``; instance i owns rows ``offsets[i]:offsets[i+1]``.
    Row-wise profiles have one row per instance.
    """

    asset_ids: list[Any]
    columns: Any
    offsets: np.ndarray
    explain: bool = False
    life: list[F.LifeState | None] | None = None  # per instance, when the request sent a usable life summary
    notes: list[str | None] | None = None  # per instance, a warning about its life summary


@dataclass
class Features:
    """What ``read`` makes of a request: asset ids, float32 features (one row each), explain flag."""

    asset_ids: list[Any]
    X: np.ndarray
    explain: bool = False
    horizons: list[float | int | None] | None = None  # per instance, when the request names a horizon
    readings: np.ndarray | None = None  # readings received per asset (None: every asset had enough)
    life: list[dict[str, Any] | None] | None = None  # per instance, its updated life summary to return
    notes: list[str | None] | None = None  # per instance, a warning about its life summary


@dataclass(frozen=True)
class Document:
    """A decoded request body: the document and, if only the lenient parser read it, why the strict
    parser refused it (then any value that passes validation still makes the body malformed)."""

    doc: dict[str, Any]
    lenient: str | None = None


def decode(body: bytes) -> Document:
    """Parse and structurally check a body: an object with a non-empty ``instances`` list (at most
    ``MAX_INSTANCES``) and an optional boolean ``explain``. Raises the 400/413."""
    lenient = None
    try:
        doc = loads(body)
    except (ValueError, TypeError, RecursionError):
        reason = malformed_reason(body)
        try:  # NaN, Infinity or 1e999? The stdlib parser reads them, so validation can name the field.
            doc = _lenient_loads(body)
        except (ValueError, TypeError, RecursionError):
            raise bad(f"body: malformed JSON ({reason})") from None
        lenient = reason
    if not isinstance(doc, dict):
        raise bad("body: must be a JSON object with an 'instances' list")
    instances = doc.get("instances")
    if not isinstance(instances, list):
        raise bad("instances: required, a list")
    if not instances:
        raise bad("instances: empty; send at least one instance")
    if len(instances) > MAX_INSTANCES:
        raise InferenceError(413, f"instances: {len(instances)} instances; at most {MAX_INSTANCES} per request")
    if not isinstance(doc.get("explain", False), bool):
        raise bad("explain: must be true or false")
    if "horizon" in doc and not intervals.is_valid_horizon(doc["horizon"]):
        raise bad(HORIZON_MESSAGE.format(where="horizon"))
    return Document(doc, lenient)


HORIZON_MESSAGE = "{where}: must be a number of cycles >= 0"


def horizons(doc: dict[str, Any], model: Any) -> list[float | int | None] | None:
    """Each instance's horizon (its own ``horizon``, else the request's), or None when the request
    names none. Raises the 400 for a bad per-instance value, or a horizon the model cannot answer
    (a classifier, or a RUL model trained without interval calibration)."""
    own = None
    if model.is_regression:  # row-wise instances are the profile's columns: "horizon" may be one of them
        check_instance_horizons(doc["instances"])
        own = [inst["horizon"] if isinstance(inst, dict) and "horizon" in inst else None for inst in doc["instances"]]
    return instance_horizons(doc.get("horizon"), own, model)  # decode checked the request's


def instance_horizons(default: float | int | None, own: list[float | int | None] | None,
                      model: Any) -> list[float | int | None] | None:
    """``horizons`` from valid values: the request's horizon ``default`` and each instance's own (``own[i]``,
    None where it names none; None: not read, a classifier's). Each instance's horizon as given (an int stays
    an int in the answer), or None when none is named; raises the 400 for a horizon the model cannot answer.
    The compiled reader hands its horizons here too."""
    out: list[float | int | None] = []
    if model.is_regression:
        out = [default if h is None else h for h in own or []]
    elif default is not None:
        raise bad("horizon: this model classifies failures (its answer is already a failure probability); "
                  "a horizon applies to RUL models")
    if all(h is None for h in out):
        return None
    if model.intervals is None:
        raise bad("horizon: this model was trained without interval calibration, so it has no failure "
                  "probability; retrain it (train.py calibrates by default)")
    return out


def check_instance_horizons(instances: list[Any]) -> None:
    """The 400 naming ``instances[i].horizon`` for the first instance whose own horizon is not a number
    of cycles >= 0 (NaN, Infinity and 1e400 included: the lenient parser reads them, so the field is named)."""
    for i, inst in enumerate(instances):
        if isinstance(inst, dict) and "horizon" in inst and not intervals.is_valid_horizon(inst["horizon"]):
            raise bad(HORIZON_MESSAGE.format(where=f"instances[{i}].horizon"))


class _Checker:
    """Per-value validation; ``note`` is appended to non-finite/out-of-range messages (lenient bodies)."""

    def __init__(self, note: str = ""):
        self.note = note

    def number(self, v: Any, where: str) -> float:
        if type(v) is float:
            if not math.isfinite(v):
                raise bad(f"{where}: must be a finite number{self.note}")
            return v
        if type(v) is int:
            try:
                return float(v)
            except OverflowError:  # an integer beyond the float range (the lenient parser keeps it exact)
                raise bad(f"{where}: number out of range{self.note}") from None
        kind = "null" if v is None else type(v).__name__
        raise bad(f"{where}: expected a number, got {kind}")

    @staticmethod
    def asset_id(inst: Any, i: int, shape: str) -> Any:
        """The instance's asset id (default: its index); 400 if the instance or the id is malformed."""
        if not isinstance(inst, dict):
            raise bad(f"instances[{i}]: must be {shape}")
        asset = inst.get("asset_id", i)
        if not isinstance(asset, str | int) or isinstance(asset, bool):
            raise bad(f"instances[{i}].asset_id: must be a string or an integer")
        return asset

    def asset(self, inst: Any, i: int, model: Any, after: float = math.inf) -> tuple[Any, dict[str, np.ndarray]]:
        """One asset's readings, checked value by value: time-sorted columns or the exact 400/413.
        Readings later than ``after`` (a life summary's last time) are kept besides the trailing window."""
        where = f"instances[{i}]"
        asset = self.asset_id(inst, i, "an object")
        readings = inst.get("readings")
        if not isinstance(readings, list):
            raise bad(f"{where}.readings: required, a list of readings")
        if not readings:
            raise bad(f"{where}.readings: empty; send at least one reading")
        if len(readings) > MAX_READINGS:
            raise InferenceError(413, f"{where}.readings: {len(readings)} readings; at most {MAX_READINGS}")
        spec = model.spec
        tc = spec.time_column
        # keep only the trailing history needed, after ordering by time
        for j, r in enumerate(readings):
            if not isinstance(r, dict):
                raise bad(f"{where}.readings[{j}]: must be an object")
        times = [self.number(r.get(tc), f"{where}.readings[{j}].{tc}") for j, r in enumerate(readings)]
        order = sorted(range(len(readings)), key=times.__getitem__)
        for a, b in itertools.pairwise(order):
            if times[a] == times[b]:
                raise bad(f"{where}.readings[{b}].{tc}: duplicate {tc} {times[b]:g}")
        keep = order[-spec.history_needed:]
        if after < math.inf:  # a life summary takes in every reading after its last one
            keep = order[min(len(order) - len(keep), sum(times[j] <= after for j in order)):]
        cols: dict[str, np.ndarray] = {tc: np.fromiter((times[j] for j in keep), float, len(keep))}
        for c in model.required:
            if c == tc:
                continue
            vals = []
            for j in keep:
                r = readings[j]
                if c not in r:
                    raise bad(f"{where}.readings[{j}].{c}: missing")
                vals.append(self.number(r[c], f"{where}.readings[{j}].{c}"))
            cols[c] = np.asarray(vals, dtype=float)
        for c, levels in spec.categorical.items():  # e.g. the machine's model or type: one of the levels
            vals = []
            for j in keep:
                v = readings[j].get(c)
                if v not in levels:
                    raise bad(f"{where}.readings[{j}].{c}: must be one of {levels}, got {v!r}")
                vals.append(v)
            cols[c] = np.asarray(vals, dtype=object)
        return asset, cols

    def row(self, inst: Any, i: int, model: Any) -> tuple[Any, dict[str, np.ndarray]]:
        where = f"instances[{i}]"
        asset = self.asset_id(inst, i, "an object of the profile's columns")
        cols: dict[str, np.ndarray] = {}
        for c in model.required:
            if c not in inst:
                raise bad(f"{where}.{c}: missing")
            cols[c] = np.asarray([self.number(inst[c], f"{where}.{c}")])
        for c, levels in model.spec.categorical.items():
            v = inst.get(c)
            if v not in levels:
                raise bad(f"{where}.{c}: must be one of {levels}, got {v!r}")
            cols[c] = np.asarray([v])
        return asset, cols


def _fast_assets(instances: list[Any], model: Any) -> Request | None:
    """All assets of a request in a few C-level passes, or None to take the checked path.

    One ``itemgetter`` call per reading pulls the required fields (``model.required`` order, time
    first), ``np.array`` builds the (readings, columns) matrix (strings, nulls, nested values and
    huge integers make it non-numeric), vectorised checks prove every value finite and each
    asset's times strictly increasing (sorting the assets that came out of order). ``np.array``
    reads true/false as 1/0, so only the values equal to 0 or 1 get their Python type checked.
    Anything unusual returns None and the per-value path produces the exact error, so both paths
    accept and refuse the same requests.
    """
    if model.spec.categorical:  # categorical readings are strings: the checked path reads them
        return None
    ids: list[Any] = []
    lists: list[list[Any]] = []
    for i, inst in enumerate(instances):
        if type(inst) is not dict:
            return None
        asset = inst.get("asset_id", i)
        readings = inst.get("readings")
        if type(asset) not in (str, int) or type(readings) is not list or not 0 < len(readings) <= MAX_READINGS:
            return None
        ids.append(asset)
        lists.append(readings)
    try:
        rows = list(map(model.getter, itertools.chain.from_iterable(lists)))  # KeyError/TypeError: bad reading
        arr = np.array(rows)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if arr.ndim != 2 or arr.dtype.kind not in "fi":
        return None
    for r, c in zip(*np.nonzero((arr == 0) | (arr == 1)), strict=True):
        if type(rows[r][c]) is bool:
            return None
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        return None
    offsets = np.zeros(len(lists) + 1, dtype=np.intp)
    np.cumsum([len(r) for r in lists], out=offsets[1:])
    t = arr[:, 0]
    if len(t) > 1:
        step_ok = np.diff(t) > 0
        step_ok[offsets[1:-1] - 1] = True  # steps across two assets do not count
        if not step_ok.all():  # some asset is out of time order: sort within assets, refuse duplicates
            owner = np.repeat(np.arange(len(lists)), np.diff(offsets))
            arr = arr[np.lexsort((t, owner))]
            step_ok = np.diff(arr[:, 0]) > 0
            step_ok[offsets[1:-1] - 1] = True
            if not step_ok.all():
                return None
    return Request(ids, F.ColumnMatrix(arr, model.required), offsets)


# ------------------------------------------------------------------------------------------ life summaries
# A bounded window forgets an asset's early life, which says much about its condition (its own baseline,
# the rate it degrades at). A life summary keeps that for a few hundred bytes: the count and running sums
# (or minima/maxima) of every normalised channel over every reading since the asset's first (the maths:
# ``features.life``). The endpoint returns an updated summary with each answer; the caller stores it
# beside the asset and sends it back with the next readings. Its JSON form::
#
#     {"model": "<16 hex digits>", "first": <time>, "last": <time>, "count": <readings>,
#      "<sum key>": [<one number per channel>] or <number> (t, tt), ...}


def _finite(v: Any) -> bool:
    """A JSON number (not a boolean) that is finite as a float: an integer too large for a float is not."""
    if type(v) is int:
        try:
            return math.isfinite(float(v))
        except OverflowError:
            return False
    return type(v) is float and math.isfinite(v)


def parse_life(doc: Any, spec: F.FeatureSpec, where: str = "life") -> F.LifeState | None:
    """A request's life summary (``where`` names it in messages): ``{}`` (start one) or a summary an
    earlier answer returned.

    Returns None when the summary was made by another model (its sums mean nothing to this one);
    raises the 400 naming the key when it is malformed (``<where>.<key>: ...``).
    """
    def refuse(message: str) -> InferenceError:
        return bad(f"{where}.{message}")

    if not isinstance(doc, dict):
        raise bad(f"{where}: must be an object: {{}} to start a life summary, or the 'life' of an earlier answer")
    if not doc:
        return F.NEW_LIFE
    keys = F.sum_keys(spec.life_stats)
    expected = {"model", "first", "last", "count", *keys}
    unknown = sorted(set(doc) - expected)
    if unknown:
        raise refuse(f"{unknown[0]}: unknown key; a life summary has {sorted(expected)}")
    missing = sorted(expected - set(doc))
    if "model" not in missing and not isinstance(doc["model"], str):
        raise refuse("model: must be a string")
    if "model" in doc and doc["model"] != F.life_fingerprint(spec):
        return None
    if missing:
        raise refuse(f"{missing[0]}: missing")
    for k in ("first", "last"):
        if not _finite(doc[k]):
            raise refuse(f"{k}: must be a finite number")
    count = doc["count"]
    if type(count) is not int or not 1 <= count <= F.MAX_LIFE_COUNT:
        raise refuse(f"count: must be a whole number from 1 to {F.MAX_LIFE_COUNT}")
    if doc["first"] > doc["last"]:
        raise refuse("first: after last")
    width = len(spec.channels)
    sums = {}
    for k in keys:
        v = doc[k]
        if k in F.LIFE_SCALARS:
            if not _finite(v):
                raise refuse(f"{k}: must be a finite number")
            sums[k] = np.array([[float(v)]])
        else:
            if not isinstance(v, list) or len(v) != width or not all(_finite(x) for x in v):
                raise refuse(f"{k}: must be a list of {width} finite numbers")
            sums[k] = np.asarray(v, dtype=float)[None, :]
    return F.LifeState(float(doc["first"]), float(doc["last"]), count, sums)


def life_document(state: F.LifeState, spec: F.FeatureSpec) -> dict[str, Any]:
    """The JSON form of a summary (what an answer returns and the next request sends back)."""
    doc: dict[str, Any] = {"model": F.life_fingerprint(spec), "first": state.first, "last": state.last,
                           "count": state.count}
    for k, v in state.sums.items():
        doc[k] = float(v[0, 0]) if k in F.LIFE_SCALARS else v[0].tolist()
    return doc


LIFE_NOT_READ = "this model reads no life summary; the 'life' sent was ignored"
LIFE_OTHER_MODEL = ("the life summary was made by another model, so it was ignored and none is returned; "
                    "send the asset's whole history with \"life\": {} to start one for this model")


def life_states(instances: list[Any], model: Any) -> tuple[list[F.LifeState | None] | None, list[str | None] | None]:
    """Each instance's life summary (``parse_life``), or None where it sent none or one this model cannot
    use, and a warning for the latter; (None, None) when no instance sent one. Raises the 400 naming the
    key of a malformed summary."""
    if not any(isinstance(inst, dict) and "life" in inst for inst in instances):
        return None, None
    states: list[F.LifeState | None] = []
    notes: list[str | None] = []
    reads = bool(model.spec.life_stats)
    for i, inst in enumerate(instances):
        doc = inst.get("life") if isinstance(inst, dict) else None
        state, note = None, None
        if isinstance(inst, dict) and "life" in inst:
            if not reads:
                note = LIFE_NOT_READ
            else:
                state = parse_life(doc, model.spec, f"instances[{i}].life")
                note = LIFE_OTHER_MODEL if state is None else None
        states.append(state)
        notes.append(note)
    return (states if any(s is not None for s in states) else None), notes


def parse_instances(document: Document, model: Any) -> Request:
    """Validate every instance against the model's feature spec; raise the first 4xx found."""
    doc, lenient = document.doc, document.lenient
    instances = doc["instances"]
    explain = bool(doc.get("explain", False))
    life, notes = life_states(instances, model) if model.spec.window_sizes else (None, None)
    if model.getter is not None and lenient is None:
        fast = _fast_assets(instances, model)
        if fast is not None:
            fast.explain, fast.life, fast.notes = explain, life, notes
            return fast
    check = _Checker(NON_FINITE_NOTE if lenient else "")
    ids, parts = [], []
    for i, inst in enumerate(instances):
        if model.spec.window_sizes:
            state = life[i] if life is not None else None
            a, c = check.asset(inst, i, model, state.last if state is not None else math.inf)
        else:
            a, c = check.row(inst, i, model)
        ids.append(a)
        parts.append(c)
    if lenient:  # the strict parser refused the body, yet every used value is fine
        if model.is_regression:  # a non-finite per-instance horizon: name it, as decode names the request's
            check_instance_horizons(instances)
        raise bad(f"body: malformed JSON ({lenient})")
    lengths = [len(next(iter(c.values()))) for c in parts]
    offsets = np.zeros(len(parts) + 1, dtype=np.intp)
    np.cumsum(lengths, out=offsets[1:])
    columns = {k: np.concatenate([c[k] for c in parts]) for k in parts[0]}
    return Request(ids, columns, offsets, explain, life, notes)


def features_with_life(req: Request, model: Any) -> tuple[np.ndarray, list[dict[str, Any] | None] | None]:
    """(n_instances, n_features) float32 matrix, one row per instance (its last reading), and each
    instance's updated life summary in its JSON form (None: the request sent none). Raises the 400 for a
    summary whose sums overflow with the readings sent."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a forged summary's overflow is refused below
            X, updated = F.transform_last_life(req.columns, req.offsets, model.spec, req.life)
    except F.LifeOverflowError as exc:
        raise bad(f"instances[{exc.index}].life: its sums overflow with the readings sent (it is not a summary "
                  "this endpoint returned); start a new one with {}") from None
    life = None if updated is None else [None if u is None else life_document(u, model.spec) for u in updated]
    return X.astype(np.float32), life


def features_matrix(req: Request, model: Any) -> np.ndarray:
    """(n_instances, n_features) float32 matrix, one row per instance (its last reading)."""
    return features_with_life(req, model)[0]


def read_python(body: bytes, model: Any, explain: bool = False) -> Features:
    """The Python path: decode, validate (naming the field of any refusal), features."""
    document = decode(body)
    req = parse_instances(document, model)
    X, life = features_with_life(req, model)
    return Features(req.asset_ids, X, req.explain or explain, horizons(document.doc, model),
                    np.diff(req.offsets), life, req.notes)


def read(body: bytes, model: Any, explain: bool = False) -> Features:
    """An accepted body (``accept_body``) -> ``Features``, or the 400/413 naming what is wrong.

    The compiled reader answers when it takes the body, life summaries included (it reads and updates them
    as ``parse_life`` and ``features.life`` do, and returns them in ``life_document``'s form), and horizons
    (valid ones only, resolved by ``instance_horizons`` as the Python path resolves them); it declines
    explanations, which need the Python path's booster contributions, a horizon ``intervals.is_valid_horizon``
    would not plainly accept, a summary ``parse_life`` would refuse or warn about (another model's), any key
    outside ``REQUEST_FIELDS``/``INSTANCE_FIELDS``; otherwise ``read_python`` does. Assets with fewer
    readings than the model's minimum are read by both, and get the same warning (``add_warnings``).
    """
    if model.reader is not None and not explain:
        fast = model.reader.read(body)  # the compiled reader, or None: the Python path decides
        if fast is not None:
            ids, X, life, asked, readings = fast
            try:
                hz = None if asked is None else instance_horizons(*asked, model)
            except InferenceError:  # a horizon this model cannot answer: the Python path refuses it
                return read_python(body, model, explain)
            return Features(ids, X, horizons=hz, readings=readings, life=life)
    return read_python(body, model, explain)


# ------------------------------------------------------------------------------------------ answers
def response_document(model: Any, asset_ids: list[Any], p: np.ndarray,
                      contributions: list[list[dict[str, Any]]] | None = None,
                      horizons: list[float | int | None] | None = None,
                      life: list[dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """The 200 document for predictions ``p`` of ``asset_ids`` (and explanations, when asked).

    RUL models with a calibration add each prediction's interval and, for instances with a horizon
    (``horizons``, from ``read``), the probability of failure within it. Instances that sent a usable
    life summary get it back updated (``life``), and their interval from the life calibration."""
    preds: list[dict[str, Any]] = []
    if model.is_regression:
        for a, v in zip(asset_ids, p, strict=True):
            preds.append({"asset_id": a, "rul": round(float(v), 3)})
        if model.intervals is not None:
            _add_intervals(model.intervals, preds, p, horizons, life)
        if life is not None:
            for pred, doc in zip(preds, life, strict=True):
                if doc is not None:
                    pred["life"] = doc
    else:
        for a, v in zip(asset_ids, p, strict=True):
            preds.append({"asset_id": a, "failure_probability": round(float(v), 6),
                          "failure": bool(v >= model.threshold)})
    if contributions is not None:
        for pred, row in zip(preds, contributions, strict=True):
            pred["contributions"] = row
    return {"predictions": preds, "model_version": model.version}


def _add_intervals(cal: intervals.Calibration, preds: list[dict[str, Any]], p: np.ndarray,
                   horizons: list[float | int | None] | None, life: list[Any] | None = None) -> None:
    """``rul_lower``/``rul_upper``/``interval_level`` on every prediction; ``horizon`` and
    ``failure_probability`` on those whose instance named a horizon. Each prediction takes the
    calibration of its kind: made with a life summary (``life[i]`` not None) or without."""
    kinds = [False] * len(preds) if life is None else [doc is not None for doc in life]
    for kind in sorted(set(kinds)):
        rows = [i for i, k in enumerate(kinds) if k == kind]
        c = cal.of(kind)
        lower, upper = c.interval(p[rows])
        for i, lo, hi in zip(rows, lower.tolist(), upper.tolist(), strict=True):
            preds[i].update(rul_lower=round(lo, 3), rul_upper=round(hi, 3), interval_level=c.level)
        if horizons is None:
            continue
        asked = [i for i in rows if horizons[i] is not None]
        probs = c.failure_probability(p[asked], np.asarray([horizons[i] for i in asked], dtype=float))
        for i, prob in zip(asked, probs.tolist(), strict=True):
            preds[i].update(horizon=horizons[i], failure_probability=round(prob, 4))


def short_history_warning(n: int, minimum: int) -> str:
    """The warning of a prediction made from fewer readings than the model's window."""
    return (f"{n} reading(s) sent; this model reads the last {minimum} readings of an asset: "
            f"send at least {minimum} for full accuracy (the prediction used what was sent)")


def add_warnings(doc: dict[str, Any], model: Any, readings: np.ndarray | None,
                 notes: list[str | None] | None = None) -> dict[str, Any]:
    """Add a ``warning`` to each prediction whose asset sent fewer readings than ``spec.min_readings``
    or a life summary the model could not use (``notes``); two warnings are joined by "; "."""
    minimum = model.spec.min_readings
    if readings is not None and minimum:
        for pred, n in zip(doc["predictions"], readings.tolist(), strict=True):
            if n < minimum:
                pred["warning"] = short_history_warning(int(n), minimum)
    for pred, note in zip(doc["predictions"], notes or [], strict=False):
        if note:
            pred["warning"] = f"{pred['warning']}; {note}" if "warning" in pred else note
    return doc
