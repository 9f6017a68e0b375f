"""The scheduled drift check (stacks/drift_monitor.py): schedule, request, alarm, retraining rule.

The request the schedule sends is checked against botocore's CreateProcessingJob shape (lengths and
patterns included) with the scheduler's execution id put in, and its container arguments against
the parser of the script it runs; the roles are in tests/infra/contracts/test_iam.py's contract.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import aws_cdk as cdk
import pytest

from stacks.config import AppConfig, ConfigError
from tests.infra.conftest import CDK_CONTEXT, synth_app
from tests.infra.contracts import iam, shapes
from tests.infra.contracts.needs import SCHEDULER_EXECUTION_ID, drift_schedule_request
from training_src import drift, processing


def _schedule(synth: Any) -> tuple[str, dict[str, Any]]:
    (name, res), = synth.resources("-Monitoring", "AWS::Scheduler::Schedule").items()
    return name, res


def _request(synth: Any) -> dict[str, Any]:
    c = synth.built.config
    stack = cdk.Stack.of(synth.built.monitoring).stack_name
    resolver = iam.Resolver(synth.templates, c.region)
    model = f"s3://{c.bucket_name('artifacts', iam.ACCOUNT)}/models/20261130-120000-f42b/model.tar.gz"
    return drift_schedule_request(_schedule(synth)[1], lambda v: resolver.resolve(stack, v), model, c.champion_parameter)


def test_schedule_starts_the_drift_job_directly(synth: Any) -> None:
    c = synth.built.config
    props = _schedule(synth)[1]["Properties"]
    assert props["ScheduleExpression"] == c.drift.schedule == "rate(1 day)"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"} and props["State"] == "ENABLED"
    target = props["Target"]
    assert target["Arn"]["Fn::Join"][1][-1].endswith(":scheduler:::aws-sdk:sagemaker:createProcessingJob")
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_the_request_is_a_valid_create_processing_job(synth: Any) -> None:
    c = synth.built.config
    req = _request(synth)
    assert shapes.problems("sagemaker", "CreateProcessingJob", req) == []
    assert req["ProcessingJobName"] == f"{c.job_prefix}-drift-{SCHEDULER_EXECUTION_ID}"
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in req["ProcessingInputs"]}
    artifacts = c.bucket_name("artifacts", iam.ACCOUNT)
    # SageMaker writes capture records under <destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/
    assert inputs["capture"] == f"s3://{artifacts}/data-capture/{c.endpoint.name}/"
    assert inputs["model"].endswith("/model.tar.gz")
    # the runner runs drift.py, and drift.py accepts the arguments the schedule passes
    script, *argv = req["AppSpecification"]["ContainerArguments"]
    assert script == "drift.py" and script in processing.SCRIPTS
    args = drift.parse_args(argv)
    assert (args.alpha, args.psi_threshold, args.window_hours) == (c.drift.alpha, c.drift.psi_threshold,
                                                                    c.drift.window_hours)
    assert args.metric_namespace == f"{c.project}/Drift"
    assert args.capture_dir == "/opt/ml/processing/input/capture" and args.model == "/opt/ml/processing/input/model"
    # the checker checks: a job name over the limit is refused
    bad = copy.deepcopy(req)
    bad["ProcessingJobName"] = "x" * 64
    assert shapes.problems("sagemaker", "CreateProcessingJob", bad)


def test_alarm_on_drifted_features_notifies(synth: Any) -> None:
    c = synth.built.config
    (alarm,) = synth.resources("-Monitoring", "AWS::CloudWatch::Alarm").values()
    p = alarm["Properties"]
    assert (p["Namespace"], p["MetricName"], p["Threshold"]) == (f"{c.project}/Drift", drift.METRIC_NAME, 1)
    assert p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and p["TreatMissingData"] == "notBreaching"
    assert p["Dimensions"] == [{"Name": "EndpointName", "Value": c.endpoint.name}]
    assert len(p["AlarmActions"]) == 1
    # retraining is off by default: no rule
    assert not synth.resources("-Monitoring", "AWS::Events::Rule")


def test_retraining_rule_when_enabled(tmp_path_factory: pytest.TempPathFactory) -> None:
    ctx = copy.deepcopy(CDK_CONTEXT)
    ctx["predmaint"]["drift"]["retrain_on_drift"] = True
    s = synth_app(tmp_path_factory.mktemp("cdk.out.retrain"), ctx)
    (rule,) = s.resources("-Monitoring", "AWS::Events::Rule").values()
    p = rule["Properties"]
    assert p["EventPattern"]["source"] == ["aws.cloudwatch"]
    assert p["EventPattern"]["detail-type"] == ["CloudWatch Alarm State Change"]
    assert p["EventPattern"]["detail"] == {"state": {"value": ["ALARM"]}}
    (target,) = p["Targets"]
    assert json.loads(target["Input"]) == s.built.config.retrain_input
    # the rule's role may start exactly the training state machine
    resolver = iam.Resolver(s.templates, s.built.config.region)
    statements = resolver.role_statements()
    mon = cdk.Stack.of(s.built.monitoring).stack_name
    role_arn, sm_arn = resolver.resolve(mon, target["RoleArn"]), resolver.resolve(mon, target["Arn"])
    (role_key,) = [k for k in statements if resolver.get_att(*k.split("/"), "Arn") == role_arn]
    assert iam.allowed(statements[role_key], "states:StartExecution", sm_arn)
    assert [st["Action"] for st in statements[role_key]] == ["states:StartExecution"]


@pytest.mark.parametrize(("override", "message"), [
    ({"schedule": "every day"}, "predmaint.drift.schedule"),
    ({"alpha": 1.5}, "predmaint.drift.alpha"),
    ({"enabled": False, "retrain_on_drift": True}, "retrain_on_drift needs"),
    ({"window": 3}, "window"),
])
def test_drift_config_is_checked(override: dict[str, Any], message: str) -> None:
    doc = copy.deepcopy(CDK_CONTEXT["predmaint"])
    doc["drift"].update(override)
    with pytest.raises(ConfigError, match=message):
        AppConfig.from_dict(doc)
