"""Every boto3 request the Lambdas and the CLI make satisfies botocore's model of the API, including
the lengths, enums and patterns botocore's own validator skips (see shapes.py).

The Lambdas' calls are the ones recorded while both handlers ran against moto with the deployment's
own names (conftest.lambda_run); moto accepts much that AWS refuses, so the recorded parameters are
checked against the service models here. The state machine's requests are checked in
test_state_machine_flow.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.contracts.shapes import assert_calls_valid, problems, recording_calls


def test_prepare_lambda_requests_satisfy_the_api_models(lambda_run: dict[str, Any]) -> None:
    calls = lambda_run["prepare_calls"]
    assert {c.operation for c in calls} >= {"ListObjectsV2", "HeadObject", "GetObject", "PutObject"}
    assert_calls_valid(calls)


def test_promote_lambda_requests_satisfy_the_api_models(lambda_run: dict[str, Any]) -> None:
    """CreateModelPackage's CustomerMetadataProperties are where the old code broke (values with
    ';', quotes or a JSON string fail the API's pattern)."""
    calls = lambda_run["promote_calls"]
    assert {c.operation for c in calls} >= {"ListModelPackages", "CreateModelPackage", "DescribeModelPackage",
                                           "UpdateModelPackage", "PutParameter", "CopyObject"}
    create = next(c for c in calls if c.operation == "CreateModelPackage")
    assert len(create.params["CustomerMetadataProperties"]) >= 8
    assert_calls_valid(calls)


@pytest.mark.parametrize("reason", [
    "rmse 11.96 beats champion's 12.3",
    "fails absolute threshold(s): rmse <= 30.0, improvement_pct >= 10.0; nasa_score",
    'metrics: {"rmse": 12.0}',
])
def test_any_decision_text_becomes_valid_registry_metadata(reason: str) -> None:
    from predmaint.modules import load_module
    from tests.infra.contracts.iam import REPO

    promo = load_module(REPO / "lambda/promote/handler.py", "contract_promote_metadata")
    request = {"ModelPackageGroupName": "g", "CustomerMetadataProperties": {"reason": promo.metadata_value(reason)}}
    assert problems("sagemaker", "CreateModelPackage", request) == []
    # and the raw text would not have been accepted
    assert problems("sagemaker", "CreateModelPackage", {**request, "CustomerMetadataProperties": {"reason": reason}})


def test_start_training_request_satisfies_the_api_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """predmaint start-training: DescribeStacks (stack name given) and StartExecution."""
    import boto3
    from moto import mock_aws

    from predmaint.aws import start_training

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="eu-west-1")
        arn = sfn.create_state_machine(name="predmaint-training", roleArn="arn:aws:iam::123456789012:role/x",
                                       definition='{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}'
                                       )["stateMachineArn"]
        with recording_calls() as calls:
            start_training(arn, "cmapss", "cmapss", "FD001", "eu-west-1")
    assert [c.operation for c in calls][-1] == "StartExecution"
    assert_calls_valid(calls)
