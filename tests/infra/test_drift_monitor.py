"""The scheduled drift check (stacks/drift_monitor.py): schedule, request, alarm, retraining rule.

The schedule invokes the starter Lambda (lambda/drift/) with the request; the request the starter sends
(the deployed function run on the schedule's own input, ``drift_run``) is checked against botocore's
CreateProcessingJob shape (lengths and patterns included) and its container arguments against the parser
of the script it runs; the roles are in tests/infra/contracts/test_iam.py's contract.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import aws_cdk as cdk
import pytest

from stacks.config import AppConfig, ConfigError
from stacks.drift_monitor import CHAMPION_AT_RUN_TIME
from tests.infra.conftest import CDK_CONTEXT, synth_app
from tests.infra.contracts import iam, shapes
from tests.infra.contracts.needs import SCHEDULER_EXECUTION_ID, drift_schedule_event
from training_src import drift, processing


def _schedule(synth: Any) -> tuple[str, dict[str, Any]]:
    (name, res), = synth.resources("-Monitoring", "AWS::Scheduler::Schedule").items()
    return name, res


def _event(synth: Any) -> dict[str, Any]:
    c = synth.built.config
    stack = cdk.Stack.of(synth.built.monitoring).stack_name
    resolver = iam.Resolver(synth.templates, c.region)
    return drift_schedule_event(_schedule(synth)[1], lambda v: resolver.resolve(stack, v))


def test_the_schedule_invokes_the_starter_which_resolves_the_champion_at_run_time(synth: Any) -> None:
    c = synth.built.config
    props = _schedule(synth)[1]["Properties"]
    assert props["ScheduleExpression"] == c.drift.schedule == "rate(1 day)"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"} and props["State"] == "ENABLED"
    target = props["Target"]
    starter = cdk.Stack.of(synth.built.monitoring).get_logical_id(synth.built.monitoring.drift.starter.function
                                                                  .node.default_child)
    assert target["Arn"] == {"Fn::GetAtt": [starter, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    # nothing in the Monitoring stack is read at deploy time from SSM (it deploys before any champion exists)
    # (but the CDK bootstrap version, which `cdk bootstrap` writes)
    assert [p["Default"] for p in synth.template("-Monitoring").get("Parameters", {}).values()
            if p["Type"].startswith("AWS::SSM::Parameter::")] == ["/cdk-bootstrap/hnb659fds/version"]
    request = _event(synth)["request"]
    model = {i["InputName"]: i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"]}["model"]
    assert model == CHAMPION_AT_RUN_TIME


def test_the_request_started_is_a_valid_create_processing_job(synth: Any, drift_run: dict[str, Any]) -> None:
    c = synth.built.config
    req = drift_run["request"]
    assert drift_run["answer"] == {"status": "started", "processing_job_name": req["ProcessingJobName"],
                                   "model": drift_run["champion"]}
    assert shapes.problems("sagemaker", "CreateProcessingJob", req) == []
    assert req["ProcessingJobName"] == f"{c.job_prefix}-drift-{SCHEDULER_EXECUTION_ID}"
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in req["ProcessingInputs"]}
    artifacts = c.bucket_name("artifacts", iam.ACCOUNT)
    # SageMaker writes capture records under <destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/
    assert inputs["capture"] == f"s3://{artifacts}/data-capture/{c.endpoint.name}/"
    assert inputs["model"] == drift_run["champion"]  # the champion of the moment, read when the check runs
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
