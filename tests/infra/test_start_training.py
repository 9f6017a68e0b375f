"""predmaint.aws.start_training against moto Step Functions and CloudFormation."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from predmaint.aws import StartTrainingError, execution_name, start_training

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(name="predmaint-training", roleArn=role, definition=json.dumps(
            {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))["stateMachineArn"]
        yield sfn, arn


class Session:
    """boto3 clients from moto, except CloudFormation (moto's needs extra packages): a stub that
    knows one stack with the training stack's output."""

    def __init__(self, arn: str) -> None:
        self.arn = arn

    def client(self, service: str, region_name: str):
        if service != "cloudformation":
            return boto3.client(service, region_name=region_name)
        arn = self.arn

        class CloudFormation:
            def describe_stacks(self, StackName):
                if StackName != "Predmaint-Training":
                    raise RuntimeError(f"Stack with id {StackName} does not exist")
                return {"Stacks": [{"Outputs": [{"OutputKey": "StateMachineArn", "OutputValue": arn}]}]}

        return CloudFormation()


def test_start_by_arn_returns_execution_and_console_link(aws):
    sfn, arn = aws
    execution, url = start_training(arn, "cmapss", "cmapss", "FD001", REGION, session=Session(arn))
    assert execution.startswith(arn.replace(":stateMachine:", ":execution:"))
    assert url.startswith(f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}#/v2/executions/")
    assert url.endswith(execution)
    started = sfn.describe_execution(executionArn=execution)
    assert json.loads(started["input"]) == {"dataset": "cmapss", "profile": "cmapss", "subset": "FD001"}


def test_start_by_stack_name_without_subset(aws):
    sfn, arn = aws
    execution, _ = start_training("Predmaint-Training", "ai4i2020", "ai4i2020", None, REGION, name="manual-1",
                                  session=Session(arn))
    assert execution.endswith(":manual-1")
    assert json.loads(sfn.describe_execution(executionArn=execution)["input"]) == \
        {"dataset": "ai4i2020", "profile": "ai4i2020", "subset": None}  # explicit: no default subset merged in


def test_clear_errors(aws):
    _, arn = aws
    with pytest.raises(StartTrainingError, match="cannot read stack 'Nope'"):
        start_training("Nope", "cmapss", "cmapss", "FD001", REGION, session=Session(arn))
    with pytest.raises(StartTrainingError, match="cannot start"):
        start_training(f"arn:aws:states:{REGION}:123456789012:stateMachine:missing", "cmapss", "cmapss", None,
                       REGION)


def test_execution_names_are_valid():
    name = execution_name("cmapss", "FD001", now=0, token="0a1b2c")
    assert name == "cmapss-FD001-19700101T000000Z-0a1b2c"
    assert len(execution_name("x" * 100, None)) <= 80


def test_execution_names_stay_unique_with_a_long_profile_name():
    """A long profile name must never cost the part that makes names unique: starts one second apart,
    and two starts in the same second, get different names, each one StartExecution accepts."""
    from tests.infra.contracts.shapes import problems

    profile = "turbofan-fleet-" + "a" * 90
    names = [execution_name(profile, "FD004", now=1_798_000_000 + s) for s in (0, 0, 1, 60)]
    assert len(set(names)) == 4, names
    for name in names:
        assert len(name) <= 80 and name.startswith("turbofan-fleet-a")
        assert problems("stepfunctions", "StartExecution", {"stateMachineArn": "arn:aws:states:eu-west-1:"
                        "123456789012:stateMachine:predmaint-training", "name": name}) == []


def test_a_profile_document_travels_inline(aws):
    from training_src.profiles import load_profile

    sfn, arn = aws
    doc = {**load_profile("cmapss").raw, "name": "turbofans"}
    execution, _ = start_training(arn, "fleet", doc, "FD002", REGION, session=Session(arn))
    sent = json.loads(sfn.describe_execution(executionArn=execution)["input"])
    assert sent == {"dataset": "fleet", "profile": doc, "subset": "FD002"}
    assert ":turbofans-FD002-" in execution  # the execution is named after the document's profile


def test_the_input_limit_is_step_functions_own():
    """MAX_INPUT_BYTES is StartExecution's input limit in botocore's service model (UTF-8 bytes)."""
    import botocore.session

    from predmaint.aws import MAX_INPUT_BYTES, ExecutionInputError, execution_input

    model = botocore.session.get_session().get_service_model("stepfunctions")
    assert model.operation_model("StartExecution").input_shape.members["input"].metadata["max"] == MAX_INPUT_BYTES
    doc = {"name": "big", "description": "é" * (MAX_INPUT_BYTES // 2)}  # 2 bytes each in UTF-8
    with pytest.raises(ExecutionInputError, match=r"is 262,\d{3} bytes with the profile inline; Step Functions "
                                                  r"accepts at most 262,144"):
        execution_input("fleet", doc, None)
    assert len(execution_input("fleet", {"name": "small"}, None).encode()) < 100
