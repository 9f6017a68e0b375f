"""promote Lambda: the gate and the registry against moto (SageMaker, S3, SSM)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from predmaint.modules import load_module

HERE = Path(__file__).resolve().parent
GROUP, BUCKET = "predmaint-cmapss", "pm-artifacts"
CHAMPION_PARAM, PACKAGE_PARAM = "/predmaint/champion/model-data-url", "/predmaint/champion/model-package-arn"


promo = load_module(HERE / "handler.py", "lambda_promote_handler_under_test")
SETTINGS = promo.Settings(model_package_group=GROUP, image_uri="1.dkr.ecr.eu-west-1.amazonaws.com/xgb:3.2-0",
                          thresholds={"rul_regression": {"max_rmse": 30.0}})


def report(rmse: float | None, fingerprint: str = "fp-test-1", nasa: float = 400.0) -> dict:
    metrics = {} if rmse is None else {"rmse": {"value": rmse}}
    return {"regression_metrics": {**metrics, "mae": {"value": 10.0}}, "nasa_score": nasa,
            "test_fingerprint": fingerprint}


@pytest.fixture
def aws(monkeypatch):
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1",
           "MODEL_PACKAGE_GROUP": GROUP, "IMAGE_URI": SETTINGS.image_uri,
           "THRESHOLDS": json.dumps(SETTINGS.thresholds), "CHAMPION_PARAMETER": CHAMPION_PARAM,
           "CHAMPION_PACKAGE_PARAMETER": PACKAGE_PARAM, "MODELS_URI": f"s3://{BUCKET}/models/",
           "POWERTOOLS_TRACE_DISABLED": "true",
           "POWERTOOLS_METRICS_NAMESPACE": "test"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        sm = boto3.client("sagemaker", region_name="eu-west-1")
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield sm, s3, boto3.client("ssm", region_name="eu-west-1")


def _event(s3, run_id: str, rep: dict) -> dict:
    key = f"runs/{run_id}/evaluation/evaluation.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(rep).encode())
    model = f"runs/{run_id}/model/model.tar.gz"
    if "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=model):
        s3.put_object(Bucket=BUCKET, Key=model, Body=f"model of {run_id}".encode())
    return {"run_id": run_id, "task": "rul_regression", "profile": "cmapss", "subset": "FD001",
            "evaluation_report_uri": f"s3://{BUCKET}/{key}",
            "model_data_url": f"s3://{BUCKET}/runs/{run_id}/model/model.tar.gz"}


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "promote", 256, "req-1"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:promote"


def _packages(sm) -> list[dict]:
    return sm.list_model_packages(ModelPackageGroupName=GROUP, SortBy="CreationTime",
                                  SortOrder="Descending")["ModelPackageSummaryList"]


def _confirm(out: dict) -> dict:
    """What the state machine does once the endpoint serves the challenger (or none exists yet)."""
    return promo.handler({"action": "confirm", "run_id": out["run_id"],
                          "model_package_arn": out["model_package_arn"]}, Context())


def _status(sm, arn: str) -> str:
    return sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"]


def test_passing_challenger_is_pending_kept_under_models_and_not_yet_the_champion(aws):
    sm, s3, ssm = aws
    s3.put_object(Bucket=BUCKET, Key="runs/run-1/model/model.tar.gz", Body=b"model bytes")
    out = promo.handler(_event(s3, "run-1", report(18.0)), Context())
    assert out["approved"] and out["status"] == "PendingManualApproval" and out["champion_model_package_arn"] is None
    assert "no champion yet" in out["reason"]
    # runs/ expires: the model that may serve is copied to models/<run-id>/ and registered from there
    assert out["model_data_url"] == f"s3://{BUCKET}/models/run-1/model.tar.gz"
    assert s3.get_object(Bucket=BUCKET, Key="models/run-1/model.tar.gz")["Body"].read() == b"model bytes"
    with pytest.raises(ssm.exceptions.ParameterNotFound):  # not serving yet: not the champion yet
        ssm.get_parameter(Name=CHAMPION_PARAM)
    package = sm.describe_model_package(ModelPackageName=out["model_package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    # the report the next gate compares with is kept beside the model (runs/ expires)
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == f"s3://{BUCKET}/models/run-1/evaluation.json"
    meta = package["CustomerMetadataProperties"]
    assert meta["run_id"] == "run-1" and meta["decision"] == "passed" and meta["metric_rmse"] == "18.0"
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == out["model_data_url"]
    assert package["InferenceSpecification"]["Containers"][0]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"


def test_confirm_approves_and_records_the_champion(aws):
    sm, s3, ssm = aws
    out = promo.handler(_event(s3, "run-1", report(18.0)), Context())
    done = _confirm(out)
    assert done["status"] == "Approved" and not done["idempotent_replay"]
    assert _status(sm, out["model_package_arn"]) == "Approved"
    assert ssm.get_parameter(Name=CHAMPION_PARAM)["Parameter"]["Value"] == out["model_data_url"]
    assert ssm.get_parameter(Name=PACKAGE_PARAM)["Parameter"]["Value"] == out["model_package_arn"]
    assert _confirm(out)["idempotent_replay"], "a retried confirmation changes nothing"


def test_rolled_back_challenger_is_rejected_and_the_champion_stays(aws):
    sm, s3, ssm = aws
    first = promo.handler(_event(s3, "run-1", report(18.0)), Context())
    _confirm(first)
    second = promo.handler(_event(s3, "run-2", report(15.5)), Context())
    assert second["approved"] and second["champion_model_package_arn"] == first["model_package_arn"]
    out = promo.handler({"action": "reject", "run_id": "run-2", "model_package_arn": second["model_package_arn"],
                         "reason": "Endpoint InService on pm-run-1, not pm-run-2: rolled back"}, Context())
    assert out["status"] == "Rejected"
    package = sm.describe_model_package(ModelPackageName=second["model_package_arn"])
    assert package["ModelApprovalStatus"] == "Rejected" and "rolled back" in package["ApprovalDescription"]
    assert ssm.get_parameter(Name=CHAMPION_PARAM)["Parameter"]["Value"] == first["model_data_url"]
    with pytest.raises(promo.InputError, match="cannot become the champion"):
        _confirm(second)
    # the next challenger is still compared with the serving champion (run-1), not the rolled-back one
    third = promo.handler(_event(s3, "run-3", report(17.0)), Context())
    assert third["approved"] and third["champion_model_package_arn"] == first["model_package_arn"]


def test_better_challenger_replaces_the_champion(aws):
    _sm, s3, ssm = aws
    first = promo.handler(_event(s3, "run-1", report(18.0)), Context())
    _confirm(first)
    out = promo.handler(_event(s3, "run-2", report(15.5)), Context())
    assert out["approved"] and out["champion_model_package_arn"] == first["model_package_arn"]
    assert "beats champion" in out["reason"]
    _confirm(out)
    assert ssm.get_parameter(Name=CHAMPION_PARAM)["Parameter"]["Value"].endswith("models/run-2/model.tar.gz")


@pytest.mark.parametrize("rmse", [19.0, 18.0], ids=["worse", "tie"])
def test_worse_or_tied_challenger_is_rejected_and_champion_kept(aws, rmse):
    sm, s3, ssm = aws
    _confirm(promo.handler(_event(s3, "run-1", report(18.0)), Context()))
    out = promo.handler(_event(s3, "run-2", report(rmse)), Context())
    assert not out["approved"] and out["status"] == "Rejected"
    assert "does not beat champion" in out["reason"]
    assert out["model_data_url"].endswith("runs/run-2/model/model.tar.gz"), "a rejected model is not kept"
    assert ssm.get_parameter(Name=CHAMPION_PARAM)["Parameter"]["Value"].endswith("models/run-1/model.tar.gz")
    statuses = [p["ModelApprovalStatus"] for p in _packages(sm)]
    assert statuses == ["Rejected", "Approved"], "newest first"


def test_absolute_threshold_rejects_even_without_champion(aws):
    _sm, s3, ssm = aws
    out = promo.handler(_event(s3, "run-1", report(45.0)), Context())
    assert not out["approved"] and "fails absolute threshold" in out["reason"]
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=CHAMPION_PARAM)


def test_champion_is_the_newest_approved_package(aws):
    _sm, s3, _ = aws
    _confirm(promo.handler(_event(s3, "run-1", report(20.0)), Context()))
    second = promo.handler(_event(s3, "run-2", report(17.0)), Context())
    _confirm(second)
    promo.handler(_event(s3, "run-3", report(25.0)), Context())  # rejected, newest overall
    pending = promo.handler(_event(s3, "run-4", report(16.0)), Context())  # passed, never deployed
    out = promo.handler(_event(s3, "run-5", report(16.5)), Context())
    assert out["approved"] and out["champion_model_package_arn"] == second["model_package_arn"]
    assert pending["status"] == "PendingManualApproval"


@pytest.mark.parametrize(("bad", "says"), [(None, "lack 'rmse'"), (math.nan, "'rmse' is not finite"),
                                           ("12.3", "'rmse' is not a number"), (-1.0, "'rmse' is negative")],
                         ids=["missing", "nan", "string", "negative"])
def test_missing_or_invalid_metrics_raise_and_register_nothing(aws, bad, says):
    sm, s3, _ = aws
    rep = report(18.0)
    if bad is None:
        del rep["regression_metrics"]["rmse"]
    else:
        rep["regression_metrics"]["rmse"]["value"] = bad
    key = "runs/run-x/evaluation/evaluation.json"
    event = {**_event(s3, "run-x", report(1.0)), "evaluation_report_uri": f"s3://{BUCKET}/{key}"}
    # _event wrote a valid report to the same key: the invalid one goes over it (json.dumps writes NaN)
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(rep).encode())
    with pytest.raises(promo.promotion.MetricsError, match=says):
        promo.handler(event, Context())
    assert _packages(sm) == []


def test_retry_of_the_same_event_is_idempotent(aws):
    sm, s3, _ssm = aws
    event = _event(s3, "run-1", report(18.0))
    first = promo.handler(event, Context())
    again = promo.handler(event, Context())
    assert len(_packages(sm)) == 1, "no duplicate package"
    assert again["idempotent_replay"] and not first["idempotent_replay"]
    assert {k: again[k] for k in ("approved", "status", "model_package_arn", "model_data_url")} == \
        {k: first[k] for k in ("approved", "status", "model_package_arn", "model_data_url")}
    # a rejected run replays as rejected too, even after a better champion appeared
    _confirm(first)
    rejected_event = _event(s3, "run-2", report(19.0))
    rejected = promo.handler(rejected_event, Context())
    _confirm(promo.handler(_event(s3, "run-3", report(10.0)), Context()))
    replay = promo.handler(rejected_event, Context())
    assert replay["status"] == "Rejected" and replay["model_package_arn"] == rejected["model_package_arn"]
    assert len(_packages(sm)) == 3


def test_different_test_set_is_not_comparable(aws):
    _sm, s3, _ = aws
    _confirm(promo.handler(_event(s3, "run-1", report(18.0, fingerprint="a")), Context()))
    out = promo.handler(_event(s3, "run-2", report(10.0, fingerprint="b")), Context())
    assert not out["approved"] and "different test set" in out["reason"]


@pytest.mark.parametrize(("event", "message"), [
    ("nope", "event must be a JSON object"),
    ({"task": "rul_regression"}, "event.run_id"),
    ({"run_id": "r1", "task": "poetry"}, "event.task"),
    ({"run_id": "r1", "task": "rul_regression"}, "model_data_url"),
    ({"run_id": "r1", "task": "rul_regression", "model_data_url": "s3://b/m"}, "evaluation_report_uri"),
    ({"run_id": "r1", "task": "rul_regression", "model_data_url": "s3://b/m", "extra": 1}, "unknown field"),
])
def test_malformed_events(event, message):
    with pytest.raises(promo.InputError, match=message):
        promo.promote(event, registry_client=None, settings=SETTINGS)  # rejected before any registry call


def test_pure_promote_with_a_fake_registry_and_inline_report():
    """Local mode's path: any object with the three registry methods, report inline."""

    class Registry:
        def __init__(self):
            self.packages: list[dict] = []

        def list_model_packages(self, **kw):
            assert kw["SortBy"] == "CreationTime" and kw["SortOrder"] == "Descending"
            rows = [p for p in reversed(self.packages)
                    if kw.get("ModelApprovalStatus") in (None, p["ModelApprovalStatus"])]
            return {"ModelPackageSummaryList": rows[: kw.get("MaxResults", 100)]}

        def describe_model_package(self, ModelPackageName):
            return next(p for p in self.packages if p["ModelPackageArn"] == ModelPackageName)

        def create_model_package(self, **kw):
            arn = f"arn:local:{len(self.packages) + 1}"
            self.packages.append({**kw, "ModelPackageArn": arn})
            return {"ModelPackageArn": arn}

        def update_model_package(self, ModelPackageArn, ModelApprovalStatus, ApprovalDescription=""):
            self.describe_model_package(ModelPackageArn)["ModelApprovalStatus"] = ModelApprovalStatus

    reg = Registry()
    ev = {"run_id": "r1", "task": "rul_regression", "model_data_url": "/tmp/m.tar.gz", "report": report(18.0)}
    first = promo.promote(ev, reg, settings=SETTINGS)
    assert first["approved"] and first["model_data_url"] == "/tmp/m.tar.gz", "local paths are not copied"
    promo.confirm({"run_id": "r1", "model_package_arn": first["model_package_arn"]}, reg)
    out = promo.promote({**ev, "run_id": "r2", "report": report(12.0)}, reg, settings=SETTINGS)
    assert out["approved"] and out["champion_model_package_arn"] == "arn:local:1"
    # the champion's metrics came back from the package metadata (inline report, no S3 URI)
    worse = promo.promote({**ev, "run_id": "r3", "report": report(19.0)}, reg, settings=SETTINGS)
    assert not worse["approved"] and "does not beat champion's 18" in worse["reason"]


def test_metadata_values_satisfy_the_registry_pattern():
    """CustomerMetadataProperties values allow letters, numbers, spaces and _.:/=+-@ only."""
    assert promo.metadata_value("rmse 11.96 beats champion's 12.3") == "rmse 11.96 beats champion-s 12.3"
    assert promo.metadata_value("fails absolute threshold(s): rmse <= 30.0, nasa;x") == \
        "fails absolute threshold-s-: rmse -= 30.0- nasa-x"
    assert promo.metadata_value("ü €") == "ü -"
    assert len(promo.metadata_value("x" * 300)) == 256


@pytest.mark.parametrize(("event", "message"), [
    ({"action": "confirm", "run_id": "r1"}, "model_package_arn is required"),
    ({"action": "reject", "run_id": "r1", "model_package_arn": "arn:x"}, "reason is required"),
    ({"action": "confirm", "run_id": "r1", "model_package_arn": "arn:x", "extra": 1}, "unknown field"),
    ({"action": "deploy", "run_id": "r1"}, "event.action must be one of"),
])
def test_malformed_decision_events(aws, event, message):
    with pytest.raises(promo.InputError, match=message):
        promo.handler(event, Context())
