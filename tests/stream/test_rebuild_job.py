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
