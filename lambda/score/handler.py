"""score Lambda: the stream's records (Kinesis) through the stream core, each asset's state in DynamoDB.

One invocation takes one batch of Kinesis records (partition key = asset id, so an asset's records
arrive in order) and runs ``stream.core.process_batch`` (training_src/stream, the code local mode's
``predmaint stream`` runs):

1. decode every record (base64 JSON, the stream record format); the Kinesis sequence number is the
   record's position, so a retried batch's records already taken in are recognised and skipped;
2. read the states of the batch's assets (``BatchGetItem``; item: ``asset_id`` S, ``version`` N,
   ``doc`` S) and the serving model's info (``MODEL_INFO_URI``: the JSON the rebuild job publishes
   for each champion: fingerprint, window, fields, limits);
3. call the endpoint once per batch (``InvokeEndpoint``; more only within its limits);
4. archive every reading, event and answer to S3 (``ARCHIVE_BUCKET``/``ARCHIVE_PREFIX``, partitioned
   by asset and by day; object names from the batch's sequence numbers, so a retried batch
   overwrites its own objects);
5. with the decision rule (``DECISION_RULE``: the JSON of ``decisions.Rule``), publish the batch's
   risk events (``AssetAtRisk``/``AssetRiskCleared``) to EventBridge (``EVENT_BUS``, source
   ``EVENT_SOURCE``) with ``PutEvents``, at most 10 entries and 256 KB a request; entries the bus
   refused (``FailedEntryCount``) are sent again, and an asset whose events still fail is retried
   like an endpoint failure: its state is not written, so Kinesis' retry evaluates the same answers
   again and emits the same events (each carries an ``event_id`` made of asset, life, type and time,
   so a consumer can drop the rare second copy: an asset with one event delivered and one refused);
   published events are archived under ``<prefix>risk/day=<day>/`` and the batch's outcomes
   (failure, maintenance) under ``<prefix>outcomes/day=<day>/``, for the quality job;
6. write each changed state with a conditional write (``version`` still the one read): no lost
   update when two invocations race.

Answer: ``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}`` (ReportBatchItemFailures)
listing the records of assets whose endpoint call failed or whose conditional write lost a race:
Lambda retries from the first of them, and records already taken in are skipped. A record that is
not the stream's format (or whose asset's stored state cannot be read, or that the endpoint refuses)
is not retried: it is logged with its error naming the record, written under
``<prefix>rejected/day=<day>/`` with that error, and counted (``RecordsRejected``); other assets go on.
No ``from __future__ import annotations``: see lambda/prepare/handler.py.
"""

import base64
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from training_src.stream import archive, core, decisions, model_api, state

logger = Logger(service="score")
tracer = Tracer(service="score")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PredMaint"), service="score")

#: DynamoDB BatchGetItem takes at most 100 keys per request
BATCH_GET_KEYS = 100
#: EventBridge PutEvents: at most 10 entries and 256 KB (entry sizes as AWS counts them) per request
PUT_EVENTS_ENTRIES, PUT_EVENTS_BYTES = 10, 256 * 1024
#: attempts at entries the bus refused (FailedEntryCount) before their asset is left to Kinesis' retry
PUT_EVENTS_ATTEMPTS = 3


class InputError(ValueError):
    """The event is not a Kinesis event."""


class PublishError(RuntimeError):
    """A PutEvents request failed as a whole (throttled, the service unreachable)."""


def kinesis_items(event: Any) -> list[tuple[str, int, Any]]:
    """``(where, sequence number, record bytes)`` of a Kinesis event's records, in order."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise InputError("event must be a Kinesis event: {\"Records\": [{\"kinesis\": {...}}, ...]}")
    out = []
    for i, rec in enumerate(event["Records"]):
        try:
            k = rec["kinesis"]
            seq = int(k["sequenceNumber"])
            data = base64.b64decode(k["data"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"Records[{i}]: not a Kinesis record ({type(exc).__name__}: {exc})") from None
        out.append((f"record {k['sequenceNumber']}", seq, data))
    return out


def rule_from_env(text: str | None) -> decisions.Rule | None:
    """``DECISION_RULE`` (``{"horizon", "threshold", "min_lead"}``, written by stacks/streaming.py from the
    typed config) -> the rule; None when unset. InputError naming the variable when it is not one."""
    if not text:
        return None
    try:
        doc = json.loads(text)
        return decisions.Rule(horizon=doc["horizon"], threshold=float(doc["threshold"]), min_lead=doc.get("min_lead"))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"DECISION_RULE: not a decision rule {{\"horizon\", \"threshold\", \"min_lead\"}} "
                         f"({type(exc).__name__}: {exc})") from None


def event_id(event: dict[str, Any]) -> str:
    """A risk event's identity: the same asset, life, type and reading time give the same id (a retried
    batch's events carry their first copy's id)."""
    key = json.dumps([event["type"], event["asset_id"], event["life"], event["time"]])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def event_entry(event: dict[str, Any], *, bus: str, source: str) -> dict[str, Any]:
    """The PutEvents entry of a risk event: detail-type = its type, detail = the rest plus ``event_id``."""
    detail = {k: v for k, v in event.items() if k != "type"}
    detail["event_id"] = event_id(event)
    return {"Source": source, "DetailType": event["type"], "Detail": json.dumps(detail, sort_keys=True),
            "EventBusName": bus}


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it against the 256 KB of a request (UTF-8 bytes of Source,
    DetailType, Detail and Resources, 14 bytes for a Time)."""
    size = 14 if entry.get("Time") is not None else 0
    for k in ("Source", "DetailType", "Detail"):
        size += len(entry.get(k, "").encode())
    return size + sum(len(r.encode()) for r in entry.get("Resources", []))


def event_batches(entries: list[dict[str, Any]]) -> list[list[int]]:
    """Indices of ``entries`` grouped into PutEvents requests within 10 entries and 256 KB, in order.
    ValueError naming the entry when one alone exceeds 256 KB."""
    out: list[list[int]] = []
    size = 0
    for i, e in enumerate(entries):
        n = entry_size(e)
        if n > PUT_EVENTS_BYTES:
            raise ValueError(f"risk event {i} ({e.get('DetailType')}): {n} bytes, over PutEvents' {PUT_EVENTS_BYTES}")
        if not out or len(out[-1]) >= PUT_EVENTS_ENTRIES or size + n > PUT_EVENTS_BYTES:
            out.append([])
            size = 0
        out[-1].append(i)
        size += n
    return out


def publish_entries(put: Callable[[list[dict[str, Any]]], dict[str, Any]], entries: list[dict[str, Any]],
                    attempts: int = PUT_EVENTS_ATTEMPTS) -> set[int]:
    """Send ``entries`` with ``put(entries)`` (PutEvents' answer: ``FailedEntryCount``, ``Entries`` in
    request order, a failed one with ``ErrorCode``); a refused entry is sent again, up to ``attempts``
    times in all. Returns the indices of the entries never accepted. ``put`` raising ``PublishError``
    (throttled, the service unreachable) fails the entries of that request for this attempt."""
    pending = list(range(len(entries)))
    for _ in range(attempts):
        if not pending:
            break
        still: list[int] = []
        for group in event_batches([entries[i] for i in pending]):
            idx = [pending[g] for g in group]
            try:
                got = put([entries[i] for i in idx])
            except PublishError:
                still += idx
                continue
            if got.get("FailedEntryCount", 0):
                still += [i for i, r in zip(idx, got["Entries"], strict=True) if r.get("ErrorCode")]
        pending = still
    return set(pending)


def score_event(event: Any, *, load: Callable[[list[str]], dict[str, Any]],
                put_archive: Callable[[str, bytes], None], write: Callable[[state.AssetState], bool],
                scorer: core.Scorer | None, info: model_api.ModelInfo, day: str, horizon: float | None = None,
                max_instances: int | None = None, rule: decisions.Rule | None = None,
                publish: Callable[[list[dict[str, Any]]], set[int]] | None = None) -> dict[str, Any]:
    """The whole invocation with its AWS calls passed in (tests, the deploy rehearsal).

    ``load(asset_ids)`` -> asset -> stored ``(version, doc)``; ``put_archive(key, body)``;
    ``write(state)`` -> False when the conditional write lost a race; ``rule``: the decision rule
    (None: no risk events); ``publish(events)`` -> indices of the events not delivered (None: events
    are only archived). Returns the Lambda's answer plus ``rejected`` (the errors), ``written`` (how
    many states were written) and ``events`` (the risk events delivered).
    """
    items = kinesis_items(event)
    records, errors = core.parse_batch(items, info)
    stored = load(sorted({r.asset_id for r in records}))
    states: dict[str, Any] = {}
    for a, (version, doc) in stored.items():
        try:
            states[a] = state.decode(a, version, doc)
        except state.StateError as exc:
            states[a] = exc
    res = core.process_batch(records, states, scorer, info, day=day, horizon=horizon, max_instances=max_instances,
                             rule=rule)
    errors += res.errors
    retry = set(res.retry)
    # events first: an asset whose events were not delivered keeps its old state and is retried, so the
    # retry emits them again (publishing after the write would lose them when PutEvents fails)
    if res.events and publish is not None:
        retry |= {res.events[i]["asset_id"] for i in publish(res.events)}
    delivered = [e for e in res.events if e["asset_id"] not in retry]
    name = f"{items[0][1]}-{items[-1][1]}.jsonl" if items else "empty.jsonl"
    kept = [i for i in res.archive if i["asset_id"] not in retry]
    for key, lines in archive.group(kept).items():
        put_archive(f"{key}/{name}", ("\n".join(lines) + "\n").encode())
    for key, lines in archive.side_partitions(kept, delivered, day).items():
        put_archive(f"{key}/{name}", ("\n".join(lines) + "\n").encode())
    if errors:
        body = "\n".join(json.dumps({"record": e.where, "asset_id": e.asset_id, "error": str(e)}) for e in errors)
        put_archive(f"rejected/day={day}/{name}", (body + "\n").encode())
    written = 0
    for a, st in res.states.items():
        if a in retry:
            continue
        if write(st):
            written += 1
        else:
            retry.add(a)
    failed = sorted({seq for (_, seq, _), r in zip(items, _asset_of(items, info), strict=True) if r in retry})
    return {"batchItemFailures": [{"itemIdentifier": str(s)} for s in failed],
            "rejected": [str(e) for e in errors], "written": written, "events": delivered,
            "dropped": [res.dropped[a] for a in sorted(res.dropped) if a in res.states and a not in retry]}


def _asset_of(items: list[tuple[str, int, Any]], info: model_api.ModelInfo) -> list[str | None]:
    """Each item's asset id (None when the record cannot be read: it is rejected, never retried)."""
    out = []
    for _, _, raw in items:
        try:
            out.append(str(json.loads(raw)["asset_id"]))
        except (ValueError, KeyError, TypeError):
            out.append(None)
    return out


# ------------------------------------------------------------------------------------------ AWS
class EndpointScorer:
    """The SageMaker endpoint through ``sagemaker-runtime`` ``InvokeEndpoint``."""

    def __init__(self, client: Any, endpoint: str):
        self.client, self.endpoint = client, endpoint

    def __call__(self, instances: list[dict[str, Any]]) -> dict[str, Any]:
        return self.score_body(model_api.request_body(instances))

    def score_body(self, body: bytes) -> dict[str, Any]:
        """``__call__`` for a request body already made."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            out = self.client.invoke_endpoint(EndpointName=self.endpoint, ContentType="application/json",
                                              Accept="application/json", Body=body)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = int(exc.response.get("OriginalStatusCode") or
                         exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)
            # ModelError carries the container's own status: 4xx is a refusal of this request
            raise model_api.ScoreError(status if err.get("Code") == "ModelError" else max(status, 500),
                                       err.get("Message", "")) from None
        except BotoCoreError as exc:
            raise model_api.ScoreError(503, str(exc)) from None
        return json.loads(out["Body"].read())


def _dynamo_load(client: Any, table: str, ids: list[str]) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for i in range(0, len(ids), BATCH_GET_KEYS):
        keys = [{"asset_id": {"S": a}} for a in ids[i:i + BATCH_GET_KEYS]]
        request = {table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            got = client.batch_get_item(RequestItems=request)
            for item in got["Responses"].get(table, []):
                try:
                    out[item["asset_id"]["S"]] = (int(item["version"]["N"]), item["doc"]["S"])
                except (KeyError, ValueError):
                    out[item["asset_id"]["S"]] = (0, "")  # decode() names what is wrong
            request = got.get("UnprocessedKeys") or None
    return out


def _dynamo_write(client: Any, table: str, st: state.AssetState) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.put_item(**state.conditional_put(table, st))
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


_INFO: dict[str, model_api.ModelInfo] = {}


class NoModelInfo(RuntimeError):
    """The model info document does not exist: no champion has been recorded with the stream enabled."""


def _model_info(s3: Any, uri: str) -> model_api.ModelInfo:
    """The serving model's info (cached per ETag: a promotion's rebuild publishes a new one).

    Without the document (``NoModelInfo``) the function cannot know the model's window or fields:
    the handler then takes the batch in without answers (``core.bootstrap_info``: states keep the
    readings' tail, the archive every reading), so no batch fails for it, and the first rebuild job
    (the pipeline's rebuild step, which writes the document after every recorded champion, the first
    one included) builds every asset's summary and answer from the archive."""
    from botocore.exceptions import ClientError

    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
        raise NoModelInfo(f"MODEL_INFO_URI {uri}: no such object: the training pipeline's rebuild step writes it "
                          "after recording a champion; run the pipeline (or its rebuild job) once") from None
    etag = got.get("ETag", "")
    if etag not in _INFO:
        _INFO.clear()
        _INFO[etag] = model_api.ModelInfo.from_json(got["Body"].read())
    return _INFO[etag]


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A Kinesis batch -> ``{"batchItemFailures": [...]}``."""
    import boto3  # only in AWS

    table, bucket = os.environ["TABLE_NAME"], os.environ["ARCHIVE_BUCKET"]
    prefix = os.environ.get("ARCHIVE_PREFIX", "stream/archive/")
    horizon = float(os.environ["HORIZON"]) if os.environ.get("HORIZON") else None
    ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    scorer: core.Scorer | None
    try:
        info = _model_info(s3, os.environ["MODEL_INFO_URI"])
        scorer = EndpointScorer(boto3.client("sagemaker-runtime"), os.environ["ENDPOINT_NAME"])
    except NoModelInfo as exc:  # before the first model info: keep the readings, answer nothing (see _model_info)
        logger.warning("no model info yet: readings kept without answers", extra={"error": str(exc)})
        info, scorer = core.bootstrap_info(os.environ["TIME_COLUMN"]), None
        metrics.add_metric(name="RecordsWithoutModel", unit=MetricUnit.Count, value=len(event.get("Records", [])))
    rule = rule_from_env(os.environ.get("DECISION_RULE"))
    publish = None
    if os.environ.get("EVENT_BUS"):
        bus, source = os.environ["EVENT_BUS"], os.environ.get("EVENT_SOURCE", "predmaint.decisions")
        events_client = boto3.client("events")

        def put(batch: list[dict[str, Any]]) -> dict[str, Any]:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                return events_client.put_events(Entries=batch)
            except (BotoCoreError, ClientError) as exc:
                logger.warning("PutEvents failed", extra={"error": str(exc)})
                raise PublishError(str(exc)) from None

        def publish(events: list[dict[str, Any]]) -> set[int]:
            return publish_entries(put, [event_entry(e, bus=bus, source=source) for e in events])
    out = score_event(
        event, load=lambda ids: _dynamo_load(ddb, table, ids),
        put_archive=lambda key, body: s3.put_object(Bucket=bucket, Key=prefix + key, Body=body),
        write=lambda st: _dynamo_write(ddb, table, st), scorer=scorer, info=info,
        day=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"), horizon=horizon,
        max_instances=int(os.environ["MAX_INSTANCES"]) if os.environ.get("MAX_INSTANCES") else None,
        rule=rule, publish=publish)
    for message in out["rejected"]:
        logger.warning("record rejected", extra={"error": message})
    for message in out["dropped"]:  # the rebuild job (run by hand, or the next promotion's) makes it again
        logger.warning("summary dropped", extra={"error": message})
    metrics.add_metric(name="RecordsIn", unit=MetricUnit.Count, value=len(event.get("Records", [])))
    metrics.add_metric(name="RecordsRejected", unit=MetricUnit.Count, value=len(out["rejected"]))
    metrics.add_metric(name="StatesWritten", unit=MetricUnit.Count, value=out["written"])
    metrics.add_metric(name="SummariesDropped", unit=MetricUnit.Count, value=len(out["dropped"]))
    metrics.add_metric(name="RiskEventsPublished", unit=MetricUnit.Count, value=len(out["events"]))
    return {"batchItemFailures": out["batchItemFailures"]}
