"""Promotion safety, as properties (hypothesis) of the one rule (``training_src/promotion.decide``) and of
the promote Lambda against a moto SageMaker Model Registry.

The rule never approves a challenger that is worse than or equal to the champion, never approves with
missing, NaN/inf, non-numeric or negative metrics, never compares metrics from different test sets,
and a retried promote event (Step Functions retries Lambdas) registers nothing new and answers the
first attempt's outcome.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from predmaint.modules import load_module
from training_src import promotion

REPO = Path(__file__).resolve().parents[2]
FP = "fp-test-1"
metric_values = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
unit_values = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
bad_values = st.one_of(
    st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")),
    st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False),
    st.none(), st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2),
)
thresholds = st.builds(promotion.Thresholds, max_rmse=st.none() | metric_values,
                       max_nasa_score=st.none() | metric_values)


def reg(rmse: Any, fingerprint: str | None = FP, nasa: Any = 100.0) -> dict[str, Any]:
    doc: dict[str, Any] = {"regression_metrics": {"rmse": {"value": rmse}, "mae": {"value": 1.0}}, "nasa_score": nasa}
    if fingerprint is not None:
        doc["test_fingerprint"] = fingerprint
    return doc


def cls(pr_auc: Any, fingerprint: str | None = FP) -> dict[str, Any]:
    return {"binary_classification_metrics": {"pr_auc": {"value": pr_auc}, "f1": {"value": 0.5}},
            "test_fingerprint": fingerprint}


def decide_or_none(task: str, challenger: dict, champion: dict | None, th: promotion.Thresholds | None = None):
    """The decision, or None when the rule refuses to decide (MetricsError): never an approval."""
    try:
        return promotion.decide(task, challenger, champion, th)
    except promotion.MetricsError:
        return None


SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(challenger=metric_values, champion=metric_values, th=thresholds)
def test_regression_never_approves_worse_or_equal(challenger, champion, th) -> None:
    d = decide_or_none("rul_regression", reg(challenger), reg(champion), th)
    assert d is not None
    if d.approved:
        assert challenger < champion
        assert th.max_rmse is None or challenger <= th.max_rmse
    if challenger >= champion:
        assert not d.approved and d.status == "Rejected"


@SETTINGS
@given(challenger=unit_values, champion=unit_values)
def test_classification_never_approves_worse_or_equal(challenger, champion) -> None:
    d = decide_or_none("failure_classification", cls(challenger), cls(champion))
    assert d is not None and d.approved == (challenger > champion)


@SETTINGS
@given(value=bad_values, champion=st.none() | metric_values, where=st.sampled_from(["rmse", "nasa_score"]))
def test_bad_challenger_metrics_are_never_approved(value, champion, where) -> None:
    rep = reg(value) if where == "rmse" else reg(10.0, nasa=value)
    th = promotion.Thresholds(max_rmse=1e9, max_nasa_score=1e12)  # the nasa gate reads nasa_score
    d = decide_or_none("rul_regression", rep, None if champion is None else reg(champion), th)
    assert d is None or not d.approved


@SETTINGS
@given(value=bad_values, challenger=metric_values)
def test_bad_champion_metrics_are_never_a_reason_to_approve(value, challenger) -> None:
    d = decide_or_none("rul_regression", reg(challenger), reg(value))
    assert d is None or not d.approved


@SETTINGS
@given(challenger=metric_values, champion=metric_values,
       fingerprints=st.tuples(st.none() | st.text(max_size=8), st.none() | st.text(max_size=8)))
def test_metrics_from_a_different_test_set_are_never_compared(challenger, champion, fingerprints) -> None:
    a, b = fingerprints
    d = decide_or_none("rul_regression", reg(challenger, a), reg(champion, b))
    if not a or a != b:
        assert d is not None and not d.approved and "different test set" in d.reason


@SETTINGS
@given(report=st.dictionaries(st.sampled_from(["regression_metrics", "nasa_score", "test_fingerprint", "x"]),
                              st.none() | st.dictionaries(st.text(max_size=5), st.none() | metric_values,
                                                          max_size=3), max_size=3))
def test_missing_metrics_are_never_approved(report) -> None:
    rmse = ((report.get("regression_metrics") or {}).get("rmse"))
    d = decide_or_none("rul_regression", report, None)
    if rmse is None:
        assert d is None or not d.approved


# ------------------------------------------------------------------------------------------------
# The promote Lambda: retried events are idempotent (moto SageMaker Model Registry + S3)
# ------------------------------------------------------------------------------------------------
GROUP, BUCKET, MAX_RMSE = "predmaint-reliability", "pm-artifacts", 30.0


promote_lambda = load_module(REPO / "lambda/promote/handler.py", "reliability_promote_handler")
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1",
       "MODEL_PACKAGE_GROUP": GROUP, "IMAGE_URI": "1.dkr.ecr.eu-west-1.amazonaws.com/xgb:3.2-0",
       "THRESHOLDS": json.dumps({"rul_regression": {"max_rmse": MAX_RMSE}}),
       "CHAMPION_PARAMETER": "/pm/champion/model-data-url", "CHAMPION_PACKAGE_PARAMETER": "/pm/champion/package",
       "MODELS_URI": f"s3://{BUCKET}/models/",
       "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "test"}


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "promote", 256, "req-1"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:promote"


# a sequence of (run, rmse) with repeats: a repeated run is a retry of the same event
runs = st.lists(st.tuples(st.integers(0, 4), st.sampled_from([8.0, 12.0, 12.0, 20.0, 35.0, float("nan")])),
                min_size=1, max_size=8)


@settings(max_examples=12, deadline=None)
@given(sequence=runs)
# found by this test: a retry of an older approved run used to roll the SSM champion pointer back
@example(sequence=[(0, 12.0), (1, 8.0), (0, 12.0)])
def test_retried_promote_events_are_idempotent_and_the_champion_only_improves(sequence) -> None:
    import boto3
    from moto import mock_aws

    with mock.patch.dict(os.environ, ENV), mock_aws():
        sm = boto3.client("sagemaker", region_name="eu-west-1")
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        ssm = boto3.client("ssm", region_name="eu-west-1")
        first: dict[str, tuple[float, dict | None]] = {}  # run -> (rmse of its first event, outcome)
        approved_runs: list[str] = []
        champion = math.inf
        for n, rmse in sequence:
            run_id = f"run-{n}"
            rmse = first[run_id][0] if run_id in first else rmse  # a retry carries the same payload
            key = f"runs/{run_id}/evaluation/evaluation.json"
            s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(reg(rmse)).encode())
            s3.put_object(Bucket=BUCKET, Key=f"runs/{run_id}/model/model.tar.gz", Body=run_id.encode())
            event = {"run_id": run_id, "task": "rul_regression", "profile": "cmapss", "subset": "FD001",
                     "evaluation_report_uri": f"s3://{BUCKET}/{key}",
                     "model_data_url": f"s3://{BUCKET}/runs/{run_id}/model/model.tar.gz"}
            try:
                out = promote_lambda.handler(event, Context())
            except promotion.MetricsError:
                out = None  # NaN metrics: refused, nothing registered (a retry is refused again)
            if out is not None and out["approved"]:  # the endpoint serves it: the state machine confirms
                promote_lambda.handler({"action": "confirm", "run_id": run_id,
                                        "model_package_arn": out["model_package_arn"]}, Context())
            if run_id in first:
                before = first[run_id][1]
                if before is None:
                    assert out is None
                else:
                    assert out["idempotent_replay"]
                    # same package and model; an approved one may have been confirmed since (Pending -> Approved)
                    assert {k: out[k] for k in ("model_package_arn", "model_data_url")} == \
                        {k: before[k] for k in ("model_package_arn", "model_data_url")}
                    # a stale retry of an older approved run must not deploy it over a newer champion
                    superseded = before["approved"] and approved_runs[-1] != run_id
                    assert out["approved"] == (before["approved"] and not superseded), (sequence, out)
                    assert ("superseded" in out["reason"]) == superseded
                continue
            first[run_id] = (rmse, out)
            if out is None:
                assert math.isnan(rmse)
                continue
            should = rmse <= MAX_RMSE and rmse < champion
            assert out["approved"] == should, (rmse, champion, out)
            if should:
                champion = rmse
                approved_runs.append(run_id)
        packages = sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
        registered = [r for r, (_, o) in first.items() if o is not None]
        assert len(packages) == len(registered), "a retry registered a second package"
        approved = [o for _, o in first.values() if o is not None and o["approved"]]
        if approved:  # the recorded champion is the last approved run's model
            value = ssm.get_parameter(Name=ENV["CHAMPION_PARAMETER"])["Parameter"]["Value"]
            assert value == approved[-1]["model_data_url"]


@pytest.mark.parametrize("bad", [None, float("nan"), -1.0, "12"])
def test_lambda_never_registers_bad_metrics(bad) -> None:
    class Registry:
        def __init__(self) -> None:
            self.created: list[dict] = []

        def list_model_packages(self, **kw: Any) -> dict:
            return {"ModelPackageSummaryList": []}

        def describe_model_package(self, **kw: Any) -> dict:  # pragma: no cover - nothing to describe
            raise AssertionError

        def create_model_package(self, **kw: Any) -> dict:
            self.created.append(kw)
            return {"ModelPackageArn": "arn:x"}

    registry = Registry()
    event = {"run_id": "r1", "task": "rul_regression", "model_data_url": "s3://b/m.tar.gz", "report": reg(bad)}
    message = {None: "metrics lack 'rmse'", "12": "is not a number", -1.0: "is negative"}.get(bad, "is not finite")
    with pytest.raises(promotion.MetricsError, match=message):
        promote_lambda.promote(event, registry)
    assert registry.created == []
