"""The one door from the streaming code to the feature and serving code.

Everything the stream needs to know about a model (its life-summary fingerprint, its window, the
fields a reading must carry, the endpoint's limits and its warning for an answer made without a
summary: ``ModelInfo``) and the one way it scores in-process (the endpoint's own ``handle``) come
through here, so a change in ``features`` or ``predmaint_serving`` is met in one place.

The feature and serving code (NumPy, pandas) is imported only inside the functions that need it:
the scoring Lambda imports the stream package without them and reads ``ModelInfo`` as the JSON
document (``to_json``) that the rebuild job publishes for each model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from . import jsonio


@dataclass(frozen=True)
class ModelInfo:
    """What the stream needs of the serving model.

    ``fingerprint``: the model's life-summary fingerprint (``features.life_fingerprint``);
    ``window``: W, the readings its longest window reads (the state keeps the last W-1);
    ``time_column``: the readings' time field; ``required``: the numeric fields of a reading;
    ``reads_life``: whether it reads life summaries; ``warning``: the endpoint's warning for an
    answer made without the asset's summary for this model; the endpoint's limits per request
    (``max_body_bytes``, ``max_instances``) and per instance (``max_readings``).
    """

    fingerprint: str
    window: int
    time_column: str
    required: tuple[str, ...]
    reads_life: bool
    warning: str
    max_body_bytes: int
    max_instances: int
    max_readings: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelInfo:
        """The document ``to_json`` wrote; ValueError naming the key when it is not one."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"model info: not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ValueError("model info: must be a JSON object")
        kinds = {"fingerprint": str, "window": int, "time_column": str, "required": list, "reads_life": bool,
                 "warning": str, "max_body_bytes": int, "max_instances": int, "max_readings": int}
        for k, kind in kinds.items():
            if type(doc.get(k)) is not kind:
                raise ValueError(f"model info: {k}: must be a {kind.__name__}")
        if doc["window"] < 1 or min(doc["max_body_bytes"], doc["max_instances"], doc["max_readings"]) < 1:
            raise ValueError("model info: window and limits must be >= 1")
        return cls(**{**{k: doc[k] for k in kinds}, "required": tuple(doc["required"])})


def info_for_spec(spec: Any) -> ModelInfo:
    """``ModelInfo`` of a fitted feature spec; ValueError for a model the stream cannot serve
    (a labelled-row profile, no time column or no bounded window)."""
    from .. import features as F
    from ..predmaint_serving import codec
    from ..predmaint_serving import model as model_mod

    if spec.task != "rul_regression" or not spec.time_column or not spec.window_sizes:
        raise ValueError("the stream serves run-to-failure (rul_regression) models with bounded windows")
    need = model_mod.for_spec(spec).required
    return ModelInfo(fingerprint=F.life_fingerprint(spec), window=int(max(spec.window_sizes)),
                     time_column=spec.time_column, required=tuple(need), reads_life=bool(spec.life_stats),
                     warning=codec.LIFE_OTHER_MODEL, max_body_bytes=codec.MAX_BODY_BYTES,
                     max_instances=codec.MAX_INSTANCES, max_readings=codec.MAX_READINGS)


def load_model(model_dir: Any) -> Any:
    """The serving model loaded from a model directory, exactly as the endpoint loads it."""
    from ..predmaint_serving import model as model_mod

    return model_mod.load(model_dir)


def request_body(instances: list[dict[str, Any]]) -> bytes:
    """The request body of ``instances`` as every scorer sends it (compact JSON: ``core.pack`` counts
    these bytes against the endpoint's 6 MB)."""
    return body_of([jsonio.dumps(i) for i in instances])


def body_of(parts: list[bytes]) -> bytes:
    """The request body of instances already in compact JSON (``parts``)."""
    return b'{"instances":[' + b",".join(parts) + b"]}"


class ScoreError(Exception):
    """The endpoint refused a request (``status`` 4xx) or failed (5xx / unreachable: ``status`` >= 500)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class InProcessScorer:
    """The endpoint's own request handling, in this process: ``scorer(instances) -> predictions``.

    ``handle`` is the serving code's ``handle`` (default: this repository's)."""

    def __init__(self, model: Any, handle: Any = None):
        from ..predmaint_serving import handler

        self.model = model
        self.handle = handle or handler.handle
        self.info = info_for_spec(model.spec)
        self.max_instances = self.info.max_instances

    def __call__(self, instances: list[dict[str, Any]]) -> dict[str, Any]:
        """The endpoint's 200 document for ``{"instances": instances}``; ScoreError on a refusal."""
        return self.score_body(request_body(instances))

    def score_body(self, body: bytes) -> dict[str, Any]:
        """``__call__`` for a request body already made (``request_body``, ``body_of``)."""
        status, out, _ = self.handle(self.model, body, "application/json", "application/json")
        doc = jsonio.loads(out)
        if status != 200:
            raise ScoreError(status, doc.get("error", ""))
        return doc
