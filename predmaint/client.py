"""A typed client for the endpoint contract (docs/contract.md, docs/openapi.yaml): local server or SageMaker.

    from predmaint.client import Instance, InvocationRequest, LocalClient
    resp = LocalClient("http://127.0.0.1:8080").invoke(
        InvocationRequest([Instance("engine-7", readings=[{"cycle": 1, "setting_1": ..., ...}])]))
    resp.predictions[0].rul, resp.predictions[0].rul_lower, resp.predictions[0].rul_upper

``InvocationRequest(..., horizon=30)`` (or an ``Instance``'s own ``horizon``) also asks for each
asset's probability of failure within 30 cycles (``Prediction.failure_probability``; RUL models).

Life summaries (RUL models that read them): ``Instance(..., life={})`` when the readings sent start at the
asset's first; each answer returns the summary updated (``Prediction.life``); store it beside the asset
and send it back with the next window (``Instance(..., life=previous.life)``). The answer is then as
accurate as from the asset's whole history, from a window of recent readings and a few hundred bytes.

``SageMakerClient("my-endpoint")`` speaks to a deployed endpoint through boto3 ``sagemaker-runtime
invoke_endpoint`` with the same request/response types. Both retry throttling and transient 5xx with
exponential backoff and jitter, and raise ``EndpointError`` (with the HTTP status and the endpoint's
``error`` message) for everything else. Clients are not thread-safe; use one per thread.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import socket
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

JSON = "application/json"
#: Statuses worth retrying: throttled, or the server/endpoint is temporarily unavailable.
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
T = TypeVar("T")


class EndpointError(Exception):
    """The endpoint refused the request or could not be reached.

    ``status`` is the HTTP status (None when no response came back), ``message`` the endpoint's
    ``error`` text (or the transport error), ``retryable`` whether retrying might succeed.
    """

    def __init__(self, status: int | None, message: str, *, retryable: bool = False):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.retryable = retryable


@dataclass
class Instance:
    """One asset: its id and its recent readings (column name -> number), in any order.

    For classification profiles, pass one row as ``row`` instead of ``readings``.
    """

    asset_id: str | int
    readings: list[dict[str, float]] | None = None
    row: dict[str, Any] | None = None
    horizon: float | None = None  # this asset's horizon (cycles), over the request's
    life: dict[str, Any] | None = None  # the asset's life summary: {} to start one, then the last answer's

    def to_json(self) -> dict[str, Any]:
        if self.row is not None:
            return {"asset_id": self.asset_id, **self.row}
        doc: dict[str, Any] = {"asset_id": self.asset_id, "readings": self.readings or []}
        if self.horizon is not None:
            doc["horizon"] = self.horizon
        if self.life is not None:
            doc["life"] = self.life
        return doc


@dataclass
class InvocationRequest:
    """A POST /invocations request; ``explain`` asks for the top feature contributions, ``horizon``
    (cycles) for each asset's probability of failure within it (RUL models)."""

    instances: list[Instance]
    explain: bool = False
    horizon: float | None = None

    def body(self) -> bytes:
        doc: dict[str, Any] = {"instances": [i.to_json() for i in self.instances]}
        if self.horizon is not None:
            doc["horizon"] = self.horizon
        return json.dumps(doc, allow_nan=False).encode()

    @property
    def custom_attributes(self) -> str | None:
        return "explain=true" if self.explain else None


@dataclass
class Contribution:
    feature: str
    value: float
    contribution: float


@dataclass
class Prediction:
    """One instance's answer: ``rul`` with its interval ``[rul_lower, rul_upper]`` at
    ``interval_level`` (regression; the interval when the model is calibrated) and, when a
    ``horizon`` was asked, ``failure_probability`` = P(RUL <= horizon); or, for classification,
    ``failure_probability``/``failure``."""

    asset_id: str | int
    rul: float | None = None
    failure_probability: float | None = None
    failure: bool | None = None
    contributions: list[Contribution] = field(default_factory=list)
    rul_lower: float | None = None
    rul_upper: float | None = None
    interval_level: float | None = None
    horizon: float | None = None
    warning: str | None = None  # e.g. fewer readings sent than the model's window
    life: dict[str, Any] | None = None  # the updated life summary, when the instance sent one

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Prediction:
        return cls(asset_id=d.get("asset_id"), rul=d.get("rul"), failure_probability=d.get("failure_probability"),
                   failure=d.get("failure"), rul_lower=d.get("rul_lower"), rul_upper=d.get("rul_upper"),
                   interval_level=d.get("interval_level"), horizon=d.get("horizon"),
                   contributions=[Contribution(c["feature"], c["value"], c["contribution"])
                                  for c in d.get("contributions") or []],
                   warning=d.get("warning"), life=d.get("life"))


@dataclass
class InvocationResponse:
    predictions: list[Prediction]
    model_version: str
    latency_ms: float = 0.0

    @classmethod
    def from_body(cls, body: bytes, latency_ms: float = 0.0) -> InvocationResponse:
        try:
            doc = json.loads(body)
            return cls([Prediction.from_json(p) for p in doc["predictions"]], str(doc.get("model_version", "")),
                       latency_ms)
        except (ValueError, KeyError, TypeError) as exc:
            raise EndpointError(200, f"response is not the endpoint contract: {exc}: {body[:200]!r}") from None


def _error_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    except ValueError:
        pass
    return body[:300].decode("utf-8", "replace") or "(empty body)"


def with_retries(call: Callable[[], T], *, retries: int, backoff: float, max_backoff: float = 20.0,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call``; on a retryable ``EndpointError`` wait ``backoff * 2**attempt`` (full jitter) and retry."""
    attempt = 0
    while True:
        try:
            return call()
        except EndpointError as exc:
            if not exc.retryable or attempt >= retries:
                raise
            sleep(random.uniform(0, min(max_backoff, backoff * 2**attempt)))
            attempt += 1


class _Invoker:
    """``invoke`` (typed request in, typed response out, latency measured) over a client's ``invoke_raw``."""

    def invoke_raw(self, body: bytes, content_type: str = JSON, accept: str = JSON,
                   custom_attributes: str | None = None) -> bytes:
        raise NotImplementedError

    def invoke(self, request: InvocationRequest) -> InvocationResponse:
        """Send ``request``; return the typed response."""
        started = time.perf_counter()
        data = self.invoke_raw(request.body(), custom_attributes=request.custom_attributes)
        return InvocationResponse.from_body(data, (time.perf_counter() - started) * 1000)


class LocalClient(_Invoker):
    """HTTP client for the local server (or anything speaking the SageMaker hosting contract).

    Keeps one keep-alive connection open. ``timeout`` is per attempt in seconds; ``retries`` extra
    attempts are made on connection errors, 429 and 502-504.
    """

    def __init__(self, url: str = "http://127.0.0.1:8080", *, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.2):
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.scheme, self.host = parsed.scheme, parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.prefix = parsed.path.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        """One raw HTTP exchange (no retries): returns (status, body, headers)."""
        conn = self._connection()
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            if resp.will_close:
                self.close()
            return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            kind = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else f"failed: {exc}"
            raise EndpointError(None, f"request to {self.url}{path} {kind}", retryable=True) from None

    def ping(self) -> bool:
        """True when ``GET /ping`` answers 200 (the model is loaded); never raises."""
        try:
            status, _, _ = self.request("GET", "/ping")
        except EndpointError:
            return False
        return status == 200

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.2) -> bool:
        """Poll ``/ping`` until it answers 200 or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return True
            time.sleep(interval)
        return False

    def invoke_raw(self, body: bytes, content_type: str = JSON, accept: str = JSON,
                   custom_attributes: str | None = None) -> bytes:
        """POST ``body`` to /invocations with retries; return the response body or raise EndpointError."""
        headers = {"Content-Type": content_type, "Accept": accept}
        if custom_attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes

        def once() -> bytes:
            status, data, _ = self.request("POST", "/invocations", body, headers)
            if status != 200:
                raise EndpointError(status, _error_message(data), retryable=status in RETRYABLE_STATUS)
            return data

        return with_retries(once, retries=self.retries, backoff=self.backoff)


class SageMakerClient(_Invoker):
    """Client for a deployed SageMaker real-time endpoint (boto3 ``sagemaker-runtime``).

    botocore's own retries are turned off so one policy (ours: throttling, 5xx and the container's
    503s, with backoff) applies, and errors come back as ``EndpointError`` with the container's message.
    """

    def __init__(self, endpoint_name: str, *, region: str | None = None, timeout: float = 30.0, retries: int = 4,
                 backoff: float = 0.5, runtime: Any = None):
        self.endpoint_name = endpoint_name
        self.retries, self.backoff = retries, backoff
        if runtime is None:
            import boto3
            from botocore.config import Config

            runtime = boto3.client("sagemaker-runtime", region_name=region, config=Config(
                connect_timeout=min(timeout, 10), read_timeout=timeout, retries={"max_attempts": 1,
                                                                                  "mode": "standard"}))
        self.runtime = runtime

    def invoke_raw(self, body: bytes, content_type: str = JSON, accept: str = JSON,
                   custom_attributes: str | None = None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"EndpointName": self.endpoint_name, "Body": body, "ContentType": content_type,
                                  "Accept": accept}
        if custom_attributes:
            kwargs["CustomAttributes"] = custom_attributes

        def once() -> bytes:
            try:
                resp = self.runtime.invoke_endpoint(**kwargs)
                return resp["Body"].read()
            except ClientError as exc:
                err = exc.response.get("Error", {})
                code = err.get("Code", "")
                status = exc.response.get("OriginalStatusCode") or \
                    exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                message = err.get("Message", str(exc))
                if code == "ModelError" and exc.response.get("OriginalMessage"):
                    message = _error_message(exc.response["OriginalMessage"].encode())
                retryable = code in ("ThrottlingException", "ServiceUnavailable", "InternalFailure",
                                     "InternalDependencyException") or (status or 0) in RETRYABLE_STATUS \
                    or (code != "ModelError" and (status or 0) >= 500)
                raise EndpointError(status, f"{code}: {message}" if code else message, retryable=retryable) from None
            except BotoCoreError as exc:
                from .aws import CREDENTIALS_HINT, is_credentials_error

                if is_credentials_error(exc):  # retrying cannot help
                    raise EndpointError(None, f"{exc}; {CREDENTIALS_HINT}") from None
                raise EndpointError(None, f"cannot reach endpoint {self.endpoint_name}: {exc}", retryable=True) \
                    from None

        return with_retries(once, retries=self.retries, backoff=self.backoff)


def instances_from_rows(rows: Iterable[dict[str, Any]], id_column: str | None, default_id: str = "asset-1", *,
                        categorical: Collection[str] = (), per_row: bool = False,
                        columns: Collection[str] | None = None, first_row: int = 2) -> list[Instance]:
    """Group flat reading rows (e.g. from a CSV) into instances by ``id_column`` (one instance if absent),
    or make one instance per row (``per_row``: labelled-rows profiles, the id column as its asset id).

    Values are converted to float, except ``categorical`` columns (kept as text); empty cells are
    dropped; the id column itself is not a reading, nor a column outside ``columns`` (when given: the
    profile's input columns; an export's other columns stay out of the request). A value that is not a finite number raises
    ValueError naming the row (``first_row`` is the file row of the first item: 2 after a header
    line) and the column.
    """
    groups: dict[Any, list[dict[str, Any]]] = {}
    for n, r in enumerate(rows, start=first_row):
        key = r.get(id_column, default_id) if id_column else default_id
        reading: dict[str, Any] = {}
        for k, v in r.items():
            if k is None:  # csv.DictReader puts surplus cells under None and fills missing ones with None
                raise ValueError(f"row {n}: more values than the header has columns")
            if v is None:
                raise ValueError(f"row {n}: fewer values than the header has columns (no {k!r})")
            if k in (id_column, "asset_id") or v == "" or (columns is not None and k not in columns):
                continue
            if k in categorical:
                reading[k] = v
                continue
            try:
                f = float(v)
            except ValueError:
                raise ValueError(f"row {n}, column {k!r}: not a number: {v!r}") from None
            if not math.isfinite(f):
                raise ValueError(f"row {n}, column {k!r}: {v!r} is not a finite number")
            reading[k] = f
        if per_row:
            groups[(n, key if id_column else f"{default_id}-{n - first_row + 1}")] = [reading]
        else:
            groups.setdefault(key, []).append(reading)
    if per_row:
        return [Instance(str(k[1]), row=v[0]) for k, v in groups.items()]
    return [Instance(k if isinstance(k, str) else str(k), readings=v) for k, v in groups.items()]
