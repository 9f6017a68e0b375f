"""quality Lambda: no archived answer is "nothing to check" (a successful answer saying why); the archive's
empty optional prefixes (outcomes, risk) are left out of the request, never an input SageMaker would fail
on; the request started is the one stacks/quality_monitor.py builds, and passes botocore's model."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from predmaint.modules import load_module
from stacks.config import AppConfig
from stacks.quality_monitor import processing_request

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
REGION, BUCKET = "eu-west-1", "predmaint-artifacts-123456789012-eu-west-1"
ARCHIVE = f"s3://{BUCKET}/stream/archive/"
starter = load_module(HERE / "handler.py", "lambda_quality_handler_under_test")
shapes = load_module(REPO / "tests" / "infra" / "contracts" / "shapes.py", "quality_test_shapes")


def _request(fleet_data_uri: str | None = None) -> dict:
    """The schedule's request as stacks/quality_monitor.py builds it (the scheduler's id put in)."""
    config = AppConfig.from_context(json.loads((REPO / "cdk.json").read_text())["context"])
    req = processing_request(config, role_arn="arn:aws:iam::123456789012:role/quality-job",
                             source_uri="s3://cdk-assets/source.tar.gz", archive_uri=ARCHIVE,
                             results_uri=f"s3://{BUCKET}/monitoring/quality/<aws.scheduler.execution-id>",
                             fleet_uri=f"s3://{BUCKET}/fleet",
                             key_arn="arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
                             fleet_data_uri=fleet_data_uri)
    return json.loads(json.dumps(req).replace("<aws.scheduler.execution-id>", "d32c5kddcf5bb8c3"))


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "predmaint-quality", 256, "req-1"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:predmaint-quality"


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                 "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "test"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield s3, boto3.client("sagemaker", region_name=REGION)


def _jobs(sm) -> list[str]:
    return [j["ProcessingJobName"] for j in sm.list_processing_jobs()["ProcessingJobSummaries"]]


def test_before_any_answer_is_archived_there_is_nothing_to_check(aws):
    s3, sm = aws
    s3.put_object(Bucket=BUCKET, Key="stream/archive/outcomes/day=2026-12-06/1-2.jsonl", Body=b"{}\n")
    answer = starter.handler({"request": _request()}, Context())
    assert answer["status"] == "nothing-to-check"
    assert answer["reason"].startswith(f"no archived answer under {ARCHIVE}answers/ yet")
    assert _jobs(sm) == []


def test_empty_optional_prefixes_are_left_out_and_the_request_is_valid(aws):
    s3, sm = aws
    s3.put_object(Bucket=BUCKET, Key="stream/archive/answers/day=2026-12-06/asset=1/1-2.jsonl", Body=b"{}\n")
    with shapes.recording_calls() as calls:
        answer = starter.handler({"request": _request()}, Context())
    assert answer["status"] == "started" and answer["inputs"] == ["code", "answers"]
    s3.put_object(Bucket=BUCKET, Key="stream/archive/risk/day=2026-12-06/3-4.jsonl", Body=b"{}\n")
    request = _request()
    request["ProcessingJobName"] += "-2"
    with shapes.recording_calls() as more:
        assert starter.handler({"request": request}, Context())["inputs"] == ["code", "answers", "risk"]
    assert sorted(_jobs(sm)) == ["pm-quality-d32c5kddcf5bb8c3", "pm-quality-d32c5kddcf5bb8c3-2"]
    shapes.assert_calls_valid(calls + more)
    assert {c.operation for c in calls} == {"ListObjectsV2", "CreateProcessingJob"}


def test_the_plan_leaves_the_event_alone():
    request = _request()
    plan = starter.plan_check({"request": request}, lambda uri: uri.endswith("answers/"))
    assert [i["InputName"] for i in plan["request"]["ProcessingInputs"]] == ["code", "answers"]
    assert [i["InputName"] for i in request["ProcessingInputs"]] == ["code", "answers", "outcomes", "risk"]


def test_the_readings_input_is_read_only_when_a_failure_is_recorded():
    request = _request(fleet_data_uri="s3://predmaint-data-123456789012-eu-west-1/raw/cmapss/train_FD001")
    names = lambda plan: [i["InputName"] for i in plan["request"]["ProcessingInputs"]]  # noqa: E731
    no_failure = starter.plan_check({"request": request}, lambda uri: not uri.endswith("outcomes/"))
    assert names(no_failure) == ["code", "answers", "risk"]
    assert names(starter.plan_check({"request": request}, lambda uri: True)) == [
        "code", "answers", "outcomes", "risk", "readings"]
    assert shapes.problems("sagemaker", "CreateProcessingJob", no_failure["request"]) == []


@pytest.mark.parametrize(("event", "message"), [
    ({}, "event must be"),
    ({"request": {"ProcessingInputs": []}}, "no ProcessingInputs named"),
    ({"request": {"ProcessingInputs": [{"InputName": "answers"}]}}, "S3 ProcessingInputs"),
])
def test_a_malformed_event_names_what_is_wrong(event, message):
    with pytest.raises(starter.InputError, match=message):
        starter.plan_check(event, lambda uri: False)
