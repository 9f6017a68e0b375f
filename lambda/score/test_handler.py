"""score Lambda: moto's Kinesis records as the Lambda receives them, DynamoDB state with conditional
writes, the S3 archive, and the endpoint answered by the real serving code; every boto3 request is
checked against botocore's service model (tests/infra/contracts/shapes.py)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.response import StreamingBody
from moto import mock_aws

from predmaint.modules import load_module
from training_src.predmaint_serving import handler as serving
from training_src.stream import core, model_api

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
shapes = load_module(REPO / "tests" / "infra" / "contracts" / "shapes.py", "score_test_shapes")
kit = load_module(REPO / "tests" / "conftest.py", "score_test_kit")  # the data folder, train.py as SageMaker runs it
assert_calls_valid, recording_calls = shapes.assert_calls_valid, shapes.recording_calls
REGION, BUCKET, TABLE, STREAM, ENDPOINT = "eu-west-1", "pm-archive", "pm-assets", "pm-telemetry", "predmaint-rul"
INFO_KEY = "stream/model-info/model-info.json"  # stacks/streaming.py MODEL_INFO_KEY
score = load_module(HERE / "handler.py", "lambda_score_handler_under_test")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small calibrated FD001 model made as the pipeline makes it (train.py, refit), loaded as served."""
    from training_src import preprocess
    from training_src.profiles import load_profile

    frames, spec, manifest = preprocess.build_datasets(load_profile("cmapss", "FD001"), kit._data_dir(), seed=0)
    out = tmp_path_factory.mktemp("score-fd001")
    preprocess.write_outputs(out, frames, spec, manifest)
    proc = kit.train_subprocess(out, out / "model", "--algorithm", "xgboost", "--num_round", "30", "--max_depth", "4",
                            "--eta", "0.2", "--fit_on", "train+validation")
    assert proc.returncode == 0, proc.stderr
    return model_api.load_model(out / "model")


@pytest.fixture(scope="module")
def units():
    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD001")
    test = read_table(resolve_file(kit._data_dir(), p.file("test")), p)
    return {str(int(u)): g.drop(columns=["unit"]).to_dict("records") for u, g in test.groupby("unit") if u <= 12}


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "predmaint-score", 512, "req-1"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:predmaint-score"


@pytest.fixture
def aws(monkeypatch, model):
    """moto with the table, bucket, stream and model info; InvokeEndpoint answered by the serving code."""
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                 "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "test", "TABLE_NAME": TABLE,
                 "ARCHIVE_BUCKET": BUCKET, "ARCHIVE_PREFIX": "stream/archive/", "ENDPOINT_NAME": ENDPOINT,
                 "MODEL_INFO_URI": f"s3://{BUCKET}/{INFO_KEY}", "HORIZON": "30", "MAX_INSTANCES": "100",
                 "TIME_COLUMN": "cycle"}.items():
        monkeypatch.setenv(k, v)
    endpoint = {"down": False, "calls": 0}

    def invoke(params, **_):
        endpoint["calls"] += 1
        if endpoint["down"]:
            return (SimpleNamespace(status_code=503, headers={}),
                    {"Error": {"Code": "ServiceUnavailable", "Message": "busy"},
                     "ResponseMetadata": {"HTTPStatusCode": 503}})
        status, body, _ = serving.handle(model, params["body"], params["headers"]["Content-Type"],
                                         params["headers"]["Accept"])
        if status != 200:  # the container's refusal, as SageMaker reports it
            return (SimpleNamespace(status_code=424, headers={}),
                    {"Error": {"Code": "ModelError", "Message": json.loads(body)["error"]},
                     "OriginalStatusCode": status, "ResponseMetadata": {"HTTPStatusCode": 424}})
        return (SimpleNamespace(status_code=200, headers={}),
                {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json",
                 "ResponseMetadata": {"HTTPStatusCode": 200}})

    with mock_aws():
        boto3.setup_default_session(region_name=REGION)
        boto3.DEFAULT_SESSION.events.register("before-call.sagemaker-runtime.InvokeEndpoint", invoke)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=BUCKET, Key=INFO_KEY, Body=model_api.info_for_spec(model.spec).to_json().encode())
        ddb = boto3.client("dynamodb")
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "asset_id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "asset_id", "KeyType": "HASH"}])
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName=STREAM, StreamModeDetails={"StreamMode": "ON_DEMAND"})
        yield SimpleNamespace(s3=s3, ddb=ddb, kinesis=kinesis, endpoint=endpoint)
        boto3.DEFAULT_SESSION = None


def put(kinesis, records: list) -> None:
    for r in records:
        data = r if isinstance(r, bytes) else json.dumps(r).encode()
        key = r["asset_id"] if isinstance(r, dict) else "junk"
        kinesis.put_record(StreamName=STREAM, Data=data, PartitionKey=str(key))


def events(kinesis, batch: int) -> list[dict]:
    """Every record of the stream as the Lambda's Kinesis events of ``batch`` records (per shard)."""
    desc = kinesis.describe_stream(StreamName=STREAM)["StreamDescription"]
    out = []
    for shard in desc["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        recs = kinesis.get_records(ShardIterator=it, Limit=10000)["Records"]
        lambda_recs = [{"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                                    "sequenceNumber": r["SequenceNumber"],
                                    "data": base64.b64encode(r["Data"]).decode(),
                                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp()},
                        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventName": "aws:kinesis:record",
                        "eventID": f"{shard['ShardId']}:{r['SequenceNumber']}", "awsRegion": REGION,
                        "eventSourceARN": desc["StreamARN"],
                        "invokeIdentityArn": "arn:aws:iam::123456789012:role/score"} for r in recs]
        out += [{"Records": lambda_recs[i:i + batch]} for i in range(0, len(lambda_recs), batch)]
    return out


def stored(ddb) -> dict[str, dict]:
    items = ddb.scan(TableName=TABLE)["Items"]
    return {i["asset_id"]["S"]: {"version": int(i["version"]["N"]), **json.loads(i["doc"]["S"])} for i in items}


def test_a_replayed_stream_keeps_each_assets_whole_history_answer(aws, model, units):
    scorer = model_api.InProcessScorer(model)
    want = {}
    for u, readings in units.items():
        p = scorer([{"asset_id": u, "readings": readings, "life": {}, "horizon": 30}])["predictions"][0]
        want[u] = {k: v for k, v in p.items() if k not in ("life", "asset_id")}
    records = []
    for k in range(0, max(map(len, units.values())), 13):  # 13 readings per record, assets interleaved
        records += [{"asset_id": u, "readings": r[k:k + 13]} for u, r in units.items() if r[k:k + 13]]
    put(aws.kinesis, records)
    batches = events(aws.kinesis, 40)
    with recording_calls() as calls:
        answers = [score.handler(e, Context()) for e in batches]
        again = score.handler(batches[-1], Context())  # a retried batch: its records are skipped
    assert all(a == {"batchItemFailures": []} for a in [*answers, again])
    assert aws.endpoint["calls"] == len(batches)  # one endpoint call per batch; none for the replay
    states = stored(aws.ddb)
    for u, w in want.items():
        ans = states[u]["answer"]
        assert {k: ans[k] for k in w} == w and ans["with_summary"] is True, u
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="stream/archive/")["Contents"]]
    assert any(k.startswith("stream/archive/readings/asset=3/day=") for k in keys)
    assert any(k.startswith("stream/archive/answers/day=") for k in keys)
    ops = {c.operation for c in calls}
    assert ops == {"GetObject", "BatchGetItem", "InvokeEndpoint", "PutObject", "PutItem"}, ops
    assert_calls_valid(calls)


def test_without_model_info_readings_are_kept_without_answers_and_the_first_model_answers_the_whole_life(
        aws, model, units):
    """Before any champion was recorded with the stream enabled there is no model info: no batch fails;
    every reading is kept (state and archive) and nothing is answered. Once the pipeline has written
    the info, each asset's next answer is its whole-history answer (the summary starts from the kept
    tail; an asset whose life outgrew the tail waits for the rebuild, answered from its window)."""
    info = aws.s3.get_object(Bucket=BUCKET, Key=INFO_KEY)["Body"].read()
    aws.s3.delete_object(Bucket=BUCKET, Key=INFO_KEY)
    score._INFO.clear()
    put(aws.kinesis, [{"asset_id": u, "readings": r[k:min(k + 20, len(r) - 1)]}
                      for k in range(0, 400, 20) for u, r in units.items() if k < len(r) - 1])
    before = events(aws.kinesis, 100)
    assert all(score.handler(batch, Context()) == {"batchItemFailures": []} for batch in before)
    states = stored(aws.ddb)
    assert set(states) == set(units) and aws.endpoint["calls"] == 0
    for u, r in units.items():
        assert states[u]["answer"] is None and states[u]["taken"] == len(r) - 1, u
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="stream/archive/")["Contents"]]
    assert any(k.startswith("stream/archive/readings/") for k in keys)
    assert not any(k.startswith("stream/archive/answers/") for k in keys)

    aws.s3.put_object(Bucket=BUCKET, Key=INFO_KEY, Body=info)
    put(aws.kinesis, [{"asset_id": u, "readings": r[-1:]} for u, r in units.items()])
    assert all(score.handler(batch, Context()) == {"batchItemFailures": []} for batch in events(aws.kinesis, 100))
    scorer = model_api.InProcessScorer(model)
    states = stored(aws.ddb)
    for u, r in units.items():
        ans = states[u]["answer"]
        if len(r) - 1 <= core.HOLD:
            p = scorer([{"asset_id": u, "readings": r, "life": {}, "horizon": 30}])["predictions"][0]
            want = {k: v for k, v in p.items() if k not in ("life", "asset_id")}
            assert {k: ans[k] for k in want} == want and ans["with_summary"] is True, u
        else:
            assert ans["with_summary"] is False and ans["warning"] == scorer.info.warning, u
    assert any(len(r) - 1 <= core.HOLD for r in units.values())


def test_bad_records_are_rejected_alone_and_lost_races_and_endpoint_failures_are_retried(aws, units):
    put(aws.kinesis, [{"asset_id": "1", "readings": units["1"][:20]}, b"{junk",
                      {"asset_id": "2", "event": "overhaul", "time": 3},
                      {"asset_id": "3", "readings": units["3"][:31]}])
    aws.ddb.put_item(TableName=TABLE, Item={"asset_id": {"S": "3"}, "version": {"N": "4"}, "doc": {"S": "{}"}})
    event = {"Records": [r for e in events(aws.kinesis, 100) for r in e["Records"]]}  # every shard's
    seq_of = {base64.b64decode(r["kinesis"]["data"]): r["kinesis"]["sequenceNumber"] for r in event["Records"]}
    seqs = [seq_of[d] for d in (json.dumps({"asset_id": "1", "readings": units["1"][:20]}).encode(), b"{junk",
                                json.dumps({"asset_id": "2", "event": "overhaul", "time": 3}).encode(),
                                json.dumps({"asset_id": "3", "readings": units["3"][:31]}).encode())]
    with recording_calls() as calls:
        out = score.handler(event, Context())
    assert out == {"batchItemFailures": []} and sorted(stored(aws.ddb)) == ["1", "3"]
    assert stored(aws.ddb)["3"] == {"version": 4}  # the unreadable row is left as it was
    rejected = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="stream/archive/rejected/")["Contents"]
    lines = [json.loads(x) for x in aws.s3.get_object(Bucket=BUCKET, Key=rejected[0]["Key"])["Body"].read()
             .decode().splitlines()]
    errors = {x["record"]: x["error"] for x in lines}
    assert sorted(errors) == sorted(f"record {s}" for s in seqs[1:])
    assert errors[f"record {seqs[1]}"].startswith(f"record {seqs[1]}: not JSON")
    assert errors[f"record {seqs[2]}"].endswith("event: unknown event 'overhaul'; known: maintenance, failure")
    assert errors[f"record {seqs[3]}"].startswith(f"record {seqs[3]}: state of asset '3': ")
    assert_calls_valid(calls)

    # a race: another invocation wrote asset 1 after this one read it -> retried, nothing lost
    put(aws.kinesis, [{"asset_id": "1", "readings": units["1"][20:31]}, {"asset_id": "4", "readings": units["4"][:30]}])
    new = {json.dumps(r).encode() for r in ({"asset_id": "1", "readings": units["1"][20:31]},
                                            {"asset_id": "4", "readings": units["4"][:30]})}
    event = {"Records": sorted((r for e in events(aws.kinesis, 100) for r in e["Records"]
                                if base64.b64decode(r["kinesis"]["data"]) in new),
                               key=lambda r: base64.b64decode(r["kinesis"]["data"]).startswith(b'{"asset_id": "4"'))}
    real = score._dynamo_load

    def racing(client, table, ids):
        got = real(client, table, ids)
        client.update_item(TableName=table, Key={"asset_id": {"S": "1"}}, UpdateExpression="SET version = version + :one",
                           ExpressionAttributeValues={":one": {"N": "1"}})
        return got

    score._dynamo_load = racing
    try:
        out = score.handler(event, Context())
    finally:
        score._dynamo_load = real
    assert out == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["kinesis"]["sequenceNumber"]}]}
    assert "4" in stored(aws.ddb)
    aws.endpoint["down"] = True
    out = score.handler(event, Context())
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == [event["Records"][0]["kinesis"]["sequenceNumber"]]
    aws.endpoint["down"] = False
    out = score.handler(event, Context())  # the retry succeeds; asset 4's record is skipped as taken in
    assert out == {"batchItemFailures": []} and stored(aws.ddb)["1"]["taken"] == 31


def test_not_a_kinesis_event():
    with pytest.raises(score.InputError, match="event must be a Kinesis event"):
        score.kinesis_items({"Records": "x"})
    with pytest.raises(score.InputError, match=r"Records\[0\]: not a Kinesis record"):
        score.kinesis_items({"Records": [{"kinesis": {"sequenceNumber": "1", "data": "%%%"}}]})


BUS, SOURCE = "pm-decisions", "predmaint.decisions"


@pytest.fixture
def bus(aws, monkeypatch):
    """A decision rule (H = 30, costs 10:1, and a minimum lead of 100 cycles on rul_lower, so that FD001's
    first test engines, cut 69-124 cycles before failing, enter risk) and an event bus whose rule forwards
    every risk event to a queue, so what was delivered can be read back."""
    monkeypatch.setenv("DECISION_RULE", json.dumps({"horizon": 30, "threshold": 0.1, "min_lead": 100}))
    monkeypatch.setenv("EVENT_BUS", BUS)
    monkeypatch.setenv("EVENT_SOURCE", SOURCE)
    ev, sqs = boto3.client("events"), boto3.client("sqs")
    ev.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName="risk")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    ev.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": [SOURCE]}))
    ev.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])

    def delivered() -> list[dict]:
        out = []
        while msgs := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
            out += [json.loads(m["Body"]) for m in msgs]
            sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                              for i, m in enumerate(msgs)])
        return out
    return delivered


def _fleet_batches(aws, units, size=40):
    records = []
    for k in range(0, max(map(len, units.values())), 13):
        records += [{"asset_id": u, "readings": r[k:k + 13]} for u, r in units.items() if r[k:k + 13]]
    # each engine fails after its last reading: an open episode closes (AssetRiskCleared, reason failure)
    records += [{"asset_id": u, "event": "failure", "time": r[-1]["cycle"] + 1} for u, r in units.items()]
    put(aws.kinesis, records)
    return events(aws.kinesis, size)


def test_risk_events_go_to_the_bus_once_per_episode(aws, bus, units):
    batches = _fleet_batches(aws, units)
    with recording_calls() as calls:
        assert all(score.handler(e, Context()) == {"batchItemFailures": []} for e in batches)
        score.handler(batches[-1], Context())  # a retried batch emits nothing again
    got = bus()
    assert got, "no engine of FD001's first 12 test engines entered risk: the rule was not applied"
    assert {e["source"] for e in got} == {SOURCE} and {e["detail-type"] for e in got} <= {"AssetAtRisk",
                                                                                          "AssetRiskCleared"}
    ids = [e["detail"]["event_id"] for e in got]
    assert len(ids) == len(set(ids))
    states = stored(aws.ddb)
    last = {}
    for e in got:  # per asset the episode alternates, and its last event is the stored episode
        a = e["detail"]["asset_id"]
        assert last.get(a) != e["detail-type"], a
        last[a] = e["detail-type"]
    for a, st in states.items():
        assert st.get("at_risk", False) == (last.get(a) == "AssetAtRisk"), a
    archived = [json.loads(x) for o in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="stream/archive/risk/")["Contents"]
                for x in aws.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().decode().splitlines()]
    assert sorted(score.event_id(e) for e in archived) == sorted(ids)
    assert any(e["detail"].get("reason") == "failure" for e in got)
    outcomes = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="stream/archive/outcomes/")["Contents"]
    assert sum(len(aws.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().splitlines())
               for o in outcomes) == len(units)
    puts = [c for c in calls if c.operation == "PutEvents"]
    assert puts and all(len(c.params["Entries"]) <= score.PUT_EVENTS_ENTRIES for c in puts)
    assert_calls_valid(calls)


def test_refused_events_fail_their_asset_and_the_retry_sends_them_once(aws, bus, units):
    """PutEvents answering FailedEntryCount for every attempt: the assets with events are retried and keep
    their state; the retry delivers the same events (same ids) and writes the states."""
    refuse = {"on": True}

    def put_events(params, **_):
        if not refuse["on"]:
            return None
        sent = json.loads(params["body"])["Entries"]  # the serialized request
        entries = [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"} for _ in sent]
        return (SimpleNamespace(status_code=200, headers={}),
                {"FailedEntryCount": len(entries), "Entries": entries, "ResponseMetadata": {"HTTPStatusCode": 200}})

    boto3.DEFAULT_SESSION.events.register("before-call.events.PutEvents", put_events)
    batches = _fleet_batches(aws, units, 10_000)  # one batch per shard, as Lambda reads them
    risky = set()
    for batch in batches:
        failed = {f["itemIdentifier"] for f in score.handler(batch, Context())["batchItemFailures"]}
        risky |= {json.loads(base64.b64decode(r["kinesis"]["data"]))["asset_id"] for r in batch["Records"]
                  if r["kinesis"]["sequenceNumber"] in failed}
    assert risky and bus() == []
    assert not risky & set(stored(aws.ddb))  # never written: the retry sees the same state
    assert "Contents" not in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="stream/archive/risk/")
    refuse["on"] = False
    assert all(score.handler(batch, Context()) == {"batchItemFailures": []} for batch in batches)
    got = bus()
    assert {e["detail"]["asset_id"] for e in got} == risky
    assert len({e["detail"]["event_id"] for e in got}) == len(got)
    assert set(stored(aws.ddb)) == set(units)


def test_put_events_requests_stay_within_10_entries_and_256_kb():
    big = {"type": "AssetAtRisk", "asset_id": "a", "life": 0, "time": 1.0, "pad": "x" * 60_000}
    entries = [score.event_entry({**big, "time": float(i)}, bus=BUS, source=SOURCE) for i in range(5)] + \
              [score.event_entry({"type": "AssetAtRisk", "asset_id": str(i), "life": 0, "time": 1.0}, bus=BUS,
                                 source=SOURCE) for i in range(23)]
    groups = score.event_batches(entries)
    assert [i for g in groups for i in g] == list(range(len(entries)))
    assert all(len(g) <= 10 and sum(score.entry_size(entries[i]) for i in g) <= 256 * 1024 for g in groups)
    assert len(groups[0]) == 4  # four 60 KB entries fit, the fifth does not
    with pytest.raises(ValueError, match="over PutEvents' 262144"):
        score.event_batches([score.event_entry({**big, "pad": "x" * 300_000}, bus=BUS, source=SOURCE)])
    with pytest.raises(score.InputError, match="DECISION_RULE: not a decision rule"):
        score.rule_from_env('{"horizon": 30}')
