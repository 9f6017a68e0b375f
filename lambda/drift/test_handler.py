"""drift Lambda: the champion is read when the check runs; no champion or no captured traffic is "nothing
to check" (a successful answer saying why), never a job SageMaker would fail on an empty input."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from predmaint.modules import load_module

HERE = Path(__file__).resolve().parent
REGION, BUCKET = "eu-west-1", "predmaint-artifacts-123456789012-eu-west-1"
PARAMETER = "/predmaint/champion/model-data-url"
starter = load_module(HERE / "handler.py", "lambda_drift_handler_under_test")


#: the model input's placeholder in the schedule's request (stacks/drift_monitor.py CHAMPION_AT_RUN_TIME;
#: tests/infra/test_drift_monitor.py checks the synthesized request has it)
CHAMPION_AT_RUN_TIME = "s3://champion-resolved-at-run-time/model.tar.gz"


def _request() -> dict:
    """The shape of the schedule's request (the synthesized one is checked in tests/infra)."""
    def s3_input(name: str, uri: str) -> dict:
        return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": f"/opt/ml/processing/input/{name}",
                                               "S3DataType": "S3Prefix", "S3InputMode": "File",
                                               "S3DataDistributionType": "FullyReplicated"}}

    return {
        "ProcessingJobName": "pm-drift-d32c5kddcf5bb8c3", "RoleArn": "arn:aws:iam::123456789012:role/drift-job",
        "AppSpecification": {"ImageUri": "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.2-0",
                             "ContainerArguments": ["drift.py"]},
        "ProcessingInputs": [s3_input("code", "s3://cdk-assets/source.tar.gz"), s3_input("model", CHAMPION_AT_RUN_TIME),
                             s3_input("capture", f"s3://{BUCKET}/data-capture/predmaint-rul/")],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "result", "S3Output": {
            "S3Uri": f"s3://{BUCKET}/monitoring/drift/d32c5kddcf5bb8c3", "LocalPath": "/opt/ml/processing/output",
            "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                  "VolumeSizeInGB": 30}},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "predmaint-drift", 256, "req-1"
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:predmaint-drift"


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                 "CHAMPION_PARAMETER": PARAMETER, "POWERTOOLS_TRACE_DISABLED": "true",
                 "POWERTOOLS_METRICS_NAMESPACE": "test"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield s3, boto3.client("ssm", region_name=REGION), boto3.client("sagemaker", region_name=REGION)


def _jobs(sm) -> list[str]:
    return [j["ProcessingJobName"] for j in sm.list_processing_jobs()["ProcessingJobSummaries"]]


def test_before_the_first_champion_there_is_nothing_to_check(aws):
    s3, _, sm = aws
    s3.put_object(Bucket=BUCKET, Key="data-capture/predmaint-rul/AllTraffic/2026/12/01/00/x.jsonl", Body=b"{}\n")
    answer = starter.handler({"request": _request()}, Context())
    assert answer == {"status": "nothing-to-check",
                      "reason": "no champion is recorded yet: the first training run records one"}
    assert _jobs(sm) == []


def test_without_captured_traffic_there_is_nothing_to_check(aws):
    _, ssm, sm = aws
    ssm.put_parameter(Name=PARAMETER, Value=f"s3://{BUCKET}/models/r1/model.tar.gz", Type="String")
    answer = starter.handler({"request": _request()}, Context())
    assert answer["status"] == "nothing-to-check"
    assert answer["reason"].startswith(f"no captured request under s3://{BUCKET}/data-capture/predmaint-rul/ yet")
    assert _jobs(sm) == []


def test_with_traffic_the_check_runs_against_the_champion_of_the_moment(aws):
    s3, ssm, sm = aws
    s3.put_object(Bucket=BUCKET, Key="data-capture/predmaint-rul/AllTraffic/2026/12/01/00/x.jsonl", Body=b"{}\n")
    for run in ("r1", "r2"):  # a promotion between two checks: the second check uses the new champion
        ssm.put_parameter(Name=PARAMETER, Value=f"s3://{BUCKET}/models/{run}/model.tar.gz", Type="String",
                          Overwrite=True)
        request = _request()
        request["ProcessingJobName"] += f"-{run}"
        answer = starter.handler({"request": request}, Context())
        assert answer == {"status": "started", "processing_job_name": request["ProcessingJobName"],
                          "model": f"s3://{BUCKET}/models/{run}/model.tar.gz"}
        described = sm.describe_processing_job(ProcessingJobName=request["ProcessingJobName"])
        models = [i["S3Input"]["S3Uri"] for i in described["ProcessingInputs"] if i["InputName"] == "model"]
        assert models == [answer["model"]]
    assert sorted(_jobs(sm)) == ["pm-drift-d32c5kddcf5bb8c3-r1", "pm-drift-d32c5kddcf5bb8c3-r2"]


def test_the_plan_puts_the_champion_in_and_leaves_the_event_alone():
    request = _request()
    assert {i["InputName"]: i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"]}["model"] == CHAMPION_AT_RUN_TIME
    plan = starter.plan_check({"request": request}, lambda: "s3://b/models/r/model.tar.gz", lambda uri: True)
    assert plan["status"] == "start"  # (the synthesized request, filled in, is shape-checked in tests/infra)
    assert request["ProcessingInputs"][1]["S3Input"]["S3Uri"] == CHAMPION_AT_RUN_TIME  # the event is not changed


@pytest.mark.parametrize(("event", "message"), [
    ({}, "event must be"),
    ({"request": {"ProcessingInputs": []}}, "no ProcessingInputs named"),
    ({"request": {"ProcessingInputs": [{"InputName": "model"}]}}, "S3 ProcessingInputs"),
])
def test_a_malformed_event_names_what_is_wrong(event, message):
    with pytest.raises(starter.InputError, match=message):
        starter.plan_check(event, lambda: None, lambda uri: False)
