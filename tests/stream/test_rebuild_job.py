"""The rebuild processing job (training_src/stream/rebuild_job.py) against moto's DynamoDB: states from
the table, readings from the archive, the new model's summaries merged with conditional writes, its
model info written; every DynamoDB request checked against botocore's service model."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from streamkit import HORIZON, chunked_records, whole_history_answers

from predmaint import streaming
from predmaint.modules import load_module
from training_src.stream import model_api, rebuild_job, state

shapes = load_module(Path(__file__).resolve().parents[1] / "infra" / "contracts" / "shapes.py", "rebuild_job_shapes")
TABLE, REGION = "pm-assets", "eu-west-1"


@pytest.mark.slow
def test_the_job_gives_every_asset_the_new_models_whole_history_answer(tmp_path, monkeypatch, scorer,
                                                                      second_model, fd001_units):
    units = {u: fd001_units[u] for u in list(fd001_units)[:25]}
    home = tmp_path / "home"
    records = [(f"record {i}", i, r) for i, r in enumerate(chunked_records(units, seed=5), 1)]
    streaming.run_stream(home, records, scorer, scorer.info, batch=50, horizon=HORIZON)
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "asset_id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "asset_id", "KeyType": "HASH"}])
        before = {}
        for st in streaming.StateStore(streaming.stream_dir(home) / "state.sqlite").all():
            ddb.put_item(TableName=TABLE, Item=state.to_item(st))
            before[st.asset_id] = st.version
        ddb.put_item(TableName=TABLE, Item={"asset_id": {"S": "broken"}, "version": {"N": "2"}, "doc": {"S": "[]"}})
        info_path = tmp_path / "out" / "model-info.json"
        with shapes.recording_calls() as calls:
            assert rebuild_job.main(["--model", str(second_model), "--archive", str(streaming.stream_dir(home) /
                                     "archive"), "--table", TABLE, "--model-info", str(info_path),
                                     "--horizon", str(HORIZON)], client=ddb) == 0
        shapes.assert_calls_valid(calls)
        assert {c.operation for c in calls} == {"Scan", "GetItem", "PutItem"}
        items = {i["asset_id"]["S"]: i for i in ddb.scan(TableName=TABLE)["Items"]}
    new = model_api.InProcessScorer(model_api.load_model(second_model))
    assert model_api.ModelInfo.from_json(info_path.read_text()) == new.info
    want = whole_history_answers(new, units)
    for u, w in want.items():
        st = state.from_item(items[u])
        assert new.info.fingerprint in st.summaries and st.version == before[u] + 1
        assert {k: st.answer[k] for k in w} == w, u
    assert items["broken"]["doc"]["S"] == "[]"  # an unreadable item is reported and left alone


def test_the_archive_reads_the_same_from_s3_as_from_a_folder(tmp_path, monkeypatch):
    """``--archive s3://...`` (what the pipeline's job is given) reads each asset's partitions in the
    order the folder reader does; an asset with nothing archived has no lines."""
    root = tmp_path / "archive"
    files = {"readings/asset=a%2Fb/day=2026-12-05/1-9.jsonl": '{"n": 1}\n{"n": 2}\n',
             "readings/asset=a%2Fb/day=2026-12-06/10-12.jsonl": '{"n": 3}\n\n',
             "readings/asset=c/day=2026-12-06/10-12.jsonl": '{"n": 4}\n',
             "answers/day=2026-12-06/asset=c/10-12.jsonl": '{"answer": 1}\n'}
    for key, body in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(body)
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="arch", CreateBucketConfiguration={"LocationConstraint": REGION})
        for key, body in files.items():
            s3.put_object(Bucket="arch", Key=f"stream/archive/{key}", Body=body.encode())
        with shapes.recording_calls() as calls:
            remote = rebuild_job.s3_lines_in(s3, "s3://arch/stream/archive/")
            got = {a: list(remote(a)) for a in ("a/b", "c", "never-seen")}
        shapes.assert_calls_valid(calls)
    local = rebuild_job.lines_in(root)
    assert got == {a: list(local(a)) for a in got}
    assert got == {"a/b": ['{"n": 1}', '{"n": 2}', '{"n": 3}'], "c": ['{"n": 4}'], "never-seen": []}


def test_before_the_table_exists_the_job_writes_the_model_info(tmp_path, monkeypatch, fd001_refit, capsys):
    """The pipeline's first champion comes before the endpoint stack creates the stream's table: the
    job has no states to rebuild but still publishes the model info the score Lambda reads."""
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    info_path = tmp_path / "out" / "model-info.json"
    with mock_aws():
        ddb, s3 = boto3.client("dynamodb", region_name=REGION), boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="arch", CreateBucketConfiguration={"LocationConstraint": REGION})
        with shapes.recording_calls() as calls:
            assert rebuild_job.main(["--model", str(fd001_refit), "--archive", "s3://arch/stream/archive/",
                                     "--table", TABLE, "--model-info", str(info_path)], client=ddb, s3=s3) == 0
        shapes.assert_calls_valid(calls)
    info = model_api.ModelInfo.from_json(info_path.read_text())
    assert info == model_api.InProcessScorer(model_api.load_model(fd001_refit)).info
    out = capsys.readouterr()
    assert '"assets": 0' in out.out and f"table {TABLE} does not exist yet" in out.err


def test_bad_usage_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        rebuild_job.main(["--model", str(tmp_path / "none"), "--archive", str(tmp_path), "--table", TABLE,
                          "--model-info", str(tmp_path / "i.json")], client=object())
    assert exc.value.code == 2
    assert "--model:" in capsys.readouterr().err.splitlines()[-1]
