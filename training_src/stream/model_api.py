"""The one door from the streaming code to the feature and serving code.

Everything the stream needs to know about a model (its life-summary fingerprint, its window, the
fields a reading must carry) and the one way it scores in-process (the endpoint's own ``handle``)
come through here, so a change in ``features`` or ``predmaint_serving`` is met in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import features as F
from ..predmaint_serving import codec, handler
from ..predmaint_serving import model as model_mod

#: the endpoint's warning for an answer made without the asset's summary for this model
LIFE_OTHER_MODEL = codec.LIFE_OTHER_MODEL
#: the endpoint's limits on one request (contract: 6 MB body, instances per request)
MAX_BODY_BYTES = codec.MAX_BODY_BYTES
MAX_INSTANCES = codec.MAX_INSTANCES
MAX_READINGS = codec.MAX_READINGS


@dataclass(frozen=True)
class ModelInfo:
    """What the stream needs of the serving model.

    ``fingerprint``: the model's life-summary fingerprint (``features.life_fingerprint``);
    ``window``: W, the readings its longest window reads (the state keeps the last W-1);
    ``time_column``: the readings' time field; ``required``: the numeric fields of a reading.
    """

    fingerprint: str
    window: int
    time_column: str
    required: tuple[str, ...]
    reads_life: bool


def info_for_spec(spec: Any) -> ModelInfo:
    """``ModelInfo`` of a fitted feature spec; ValueError for a model the stream cannot serve
    (a labelled-row profile, no time column or no bounded window)."""
    if spec.task != "rul_regression" or not spec.time_column or not spec.window_sizes:
        raise ValueError("the stream serves run-to-failure (rul_regression) models with bounded windows")
    need = model_mod.for_spec(spec).required
    return ModelInfo(fingerprint=F.life_fingerprint(spec), window=int(max(spec.window_sizes)),
                     time_column=spec.time_column, required=tuple(need), reads_life=bool(spec.life_stats))


def load_model(model_dir: Any) -> Any:
    """The serving model loaded from a model directory, exactly as the endpoint loads it."""
    return model_mod.load(model_dir)


def request_body(instances: list[dict[str, Any]]) -> bytes:
    """The request body of ``instances`` as every scorer sends it (compact JSON: ``core.pack`` counts
    these bytes against the endpoint's 6 MB)."""
    return json.dumps({"instances": instances}, separators=(",", ":")).encode()


class ScoreError(Exception):
    """The endpoint refused a request (``status`` 4xx) or failed (5xx / unreachable: ``status`` >= 500)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class InProcessScorer:
    """The endpoint's own request handling, in this process: ``scorer(instances) -> predictions``.

    ``handle`` is the serving code's ``handle`` (default: this repository's; local mode passes the
    model artifact's own, as ``predmaint serve`` runs it)."""

    def __init__(self, model: Any, handle: Any = None):
        self.model = model
        self.handle = handle or handler.handle
        self.info = info_for_spec(model.spec)
        self.max_instances = MAX_INSTANCES

    def __call__(self, instances: list[dict[str, Any]]) -> dict[str, Any]:
        """The endpoint's 200 document for ``{"instances": instances}``; ScoreError on a refusal."""
        body = request_body(instances)
        status, out, _ = self.handle(self.model, body, codec.JSON, codec.JSON)
        doc = json.loads(out)
        if status != 200:
            raise ScoreError(status, doc.get("error", ""))
        return doc
