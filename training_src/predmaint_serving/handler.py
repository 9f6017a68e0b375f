"""A whole request (``handle``, the local server's entry) and the SageMaker container's three hooks.

Both answer the endpoint contract (docs/contract.md, "Endpoint"): 200 with the predictions, or 400/406/413/415 with
``{"error": "<what and where>"}``; never a 5xx on bad input.

How the container calls the hooks, and why they look as they do (sagemaker-containers 2.8.6.post2,
which the SageMaker XGBoost container's script-mode serving uses: its ``serving.main`` builds a
``_transformer.Transformer`` from the module's hooks and serves ``Transformer.transform`` from a
``_worker.Worker`` Flask app under gunicorn):

- The module may define ``transform_fn`` OR ``input_fn``/``predict_fn``/``output_fn``, never both
  (``serving._user_module_transformer`` raises, and so does ``Transformer.__init__``). We define
  the three: ``transform_fn`` would have to parse the request itself, and the three let the
  container's defaults and logging apply as designed.
- ``Transformer._default_transform_fn`` calls ``input_fn(content, content_type)`` ->
  ``predict_fn(data, model)`` -> ``output_fn(prediction, accept)`` and returns what ``output_fn``
  returns: a ``(body, mimetype)`` tuple becomes a 200 response, a ``worker.Response`` is sent as
  it is, status code included. Any exception a hook raises is wrapped in ``ClientError`` and
  becomes Flask's 500 HTML page (only ``UnsupportedFormatError`` maps to 415/406, with the
  library's own error document, not ours). So ``output_fn`` is the one hook that can set a status:
  ``accept`` and ``predict`` never raise on bad input, they pass a ``Refusal`` along, and
  ``respond`` turns it into a ``worker.Response`` with the status and our JSON error.
- ``Request.content`` hands JSON bodies over as ``str`` (it decodes the UTF-8 media types,
  ``application/json`` and ``text/csv``) and everything else as ``bytes``; ``codec.accept_body``
  takes both, so the compiled reader serves the container too.
- Only ``output_fn`` sees ``Accept`` (a missing or ``*/*`` Accept arrives as the container's
  default, application/json), so the 406 check runs there, before any other refusal, as in
  ``handle``. The container substitutes application/json for a missing Content-Type before any
  hook runs, and gives the hooks no custom attributes: there, explanations are asked for in the
  body (``"explain": true``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from . import codec, predictors


@dataclass(frozen=True)
class Refusal:
    """A refused request travelling from ``accept``/``predict`` to ``respond`` (container hooks)."""

    status: int
    message: str


def answer(model: Any, features: codec.Features) -> dict[str, Any]:
    """The 200 document for read features: predictions, and explanations when asked for."""
    p = predictors.predict_matrix(model, features.X)
    contributions = predictors.explain(model, features.X) if features.explain else None
    doc = codec.response_document(model, features.asset_ids, p, contributions, features.horizons, features.life)
    return codec.add_warnings(doc, model, features.readings, features.notes)


def handle(model: Any, body: bytes | str, content_type: str | None, accept: str | None,
           custom_attributes: str | None = None) -> tuple[int, bytes, str]:
    """The whole request -> (status, JSON body, content type); every refusal a 4xx JSON error.

    Never raises on bad input (a raise is a bug, which the server answers with a 500).
    """
    try:
        codec.check_accept(accept)  # refuse before doing the work
        raw = codec.accept_body(body, content_type)
        doc = answer(model, codec.read(raw, model, codec.explain_requested(custom_attributes)))
        return 200, codec.dumps(doc), codec.JSON
    except codec.InferenceError as exc:
        return exc.status_code, codec.error_body(exc.message), codec.JSON


# ---------------------------------------------------------------------------------- container hooks
def _received_bytes(body: bytes | str) -> bytes | str:
    """The bytes the client sent, where the container's decoding lost them.

    sagemaker-containers hands a JSON body over as text decoded by werkzeug's ``get_data(as_text=True)``,
    which replaces bytes that are not UTF-8 with U+FFFD: the body would then be read as valid JSON (an
    ``asset_id`` echoed as U+FFFD) where the local server refuses it. The library's ``Transformer.transform``
    holds the request object (its local ``request``, a ``sagemaker_containers._worker.Request``), which
    keeps the raw bytes (``get_data`` caches them); when the text holds a U+FFFD those bytes are read
    instead. Elsewhere (no such caller) the text is kept.
    """
    if not isinstance(body, str) or "\ufffd" not in body:
        return body
    frame = sys._getframe(1)
    for _ in range(12):  # Transformer.transform -> _default_transform_fn -> input_fn -> accept -> here
        if frame is None:
            break
        request = frame.f_locals.get("request")
        raw = getattr(request, "_cached_data", None)
        if type(request).__module__.startswith("sagemaker_containers") and isinstance(raw, bytes):
            return raw
        frame = frame.f_back
    return body


def accept(body: bytes | str, content_type: str | None) -> bytes | Refusal:
    """``input_fn``: the body as bytes after the media-type and size checks, or the refusal."""
    try:
        return codec.accept_body(_received_bytes(body), content_type)
    except codec.InferenceError as exc:
        return Refusal(exc.status_code, exc.message)


def predict(data: bytes | Refusal, model: Any) -> dict[str, Any] | Refusal:
    """``predict_fn``: read (compiled reader or Python path) and predict; refusals pass through."""
    if isinstance(data, Refusal):
        return data
    try:
        return answer(model, codec.read(data, model))
    except codec.InferenceError as exc:
        return Refusal(exc.status_code, exc.message)


def respond(prediction: dict[str, Any] | Refusal, accept: str | None) -> Any:
    """``output_fn``: ``(JSON body, content type)`` for a 200; a refusal (a 406 first) as the
    container's ``worker.Response`` with its status. Outside the container, where there is no
    such response class, a refusal raises ``codec.InferenceError`` for the caller to map."""
    try:
        codec.check_accept(accept)
    except codec.InferenceError as exc:
        prediction = Refusal(exc.status_code, exc.message)
    if not isinstance(prediction, Refusal):
        return codec.dumps(prediction), codec.JSON
    try:
        from sagemaker_containers.beta.framework import worker
    except ImportError:
        raise codec.InferenceError(prediction.status, prediction.message) from None
    return worker.Response(response=codec.error_body(prediction.message), status=prediction.status,
                           mimetype=codec.JSON)
