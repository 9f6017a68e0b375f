"""The scheduled quality check (stacks/quality_monitor.py) and the risk events' bus (stacks/streaming.py), in
the app synthesized with everything of the decisions loop on (stream, decisions.notify, quality retraining and
fleet training data, drift retraining, the raw-upload trigger) in VPC mode: cdk-nag passes (synthesis would
fail otherwise), the job's request passes botocore's CreateProcessingJob model and its arguments the job's own parser, the alarms watch the latest
model version's figures, and one retraining rule per check starts the state machine. The roles are checked
in tests/infra/contracts/test_quality_iam.py; the starter Lambda's path in lambda/quality/test_handler.py."""

from __future__ import annotations

import copy
import json
from typing import Any

import aws_cdk as cdk
import pytest

from stacks.config import AppConfig, ConfigError
from tests.infra.conftest import CDK_CONTEXT, synth_app
from tests.infra.contracts import iam, shapes
from tests.infra.contracts.needs import drift_schedule_event
from training_src import processing


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ctx = copy.deepcopy(CDK_CONTEXT)
    p = ctx["predmaint"]
    p["stream"] = {"enabled": True}
    p["vpc"] = {**p.get("vpc", {}), "enabled": True}
    p["decisions"]["notify"] = True
    p["quality"]["retrain_on_alarm"] = True
    p["quality"]["fleet_training_data"] = True
    p["triggers"] = {**p.get("triggers", {}), "on_raw_upload": True}  # the rule fleet histories must not fire
    p["drift"]["retrain_on_drift"] = True
    return synth_app(tmp_path_factory.mktemp("cdk.out.loop"), ctx)


def test_the_schedules_request_is_valid_and_runs_in_the_vpc(loop: Any) -> None:
    from training_src.stream import quality_job

    c, q = loop.built.config, loop.built.monitoring.quality
    stack = cdk.Stack.of(q.schedule)
    schedule = loop.templates[stack.stack_name]["Resources"][stack.get_logical_id(q.schedule)]
    assert schedule["Properties"]["ScheduleExpression"] == c.quality.schedule
    resolver = iam.Resolver(loop.templates, c.region)
    req = drift_schedule_event(schedule, lambda v: resolver.resolve(stack.stack_name, v))["request"]
    assert shapes.problems("sagemaker", "CreateProcessingJob", req) == []
    # the schedule itself, as the CreateSchedule request CloudFormation makes of it (the target's input
    # within the API's length limit, the retry policy's ranges)
    props = resolver.resolve(stack.stack_name, schedule["Properties"])
    assert shapes.problems("scheduler", "CreateSchedule", {"Name": "predmaint-quality", **props}) == []
    net = req["NetworkConfig"]
    assert net["EnableNetworkIsolation"] is False and net["VpcConfig"]["Subnets"]  # CloudWatch via its endpoint
    assert "Monitoring" in loop.built.network.interface_endpoints
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in req["ProcessingInputs"]}
    artifacts = c.bucket_name("artifacts", iam.ACCOUNT)
    assert {k: v for k, v in inputs.items() if k != "code"} == {
        n: f"s3://{artifacts}/stream/archive/{n}/" for n in ("answers", "outcomes", "risk", "readings")}
    outputs = {o["OutputName"]: o["S3Output"] for o in req["ProcessingOutputConfig"]["Outputs"]}
    assert outputs["fleet"]["S3Uri"] == f"s3://{artifacts}/fleet"
    # the failed lives' histories: beside the train file's parts, where the prepare Lambda reads a role
    data = c.bucket_name("data", iam.ACCOUNT)
    assert outputs["fleet-data"]["S3Uri"] == f"s3://{data}/raw/{c.dataset}/train_FD001"
    assert outputs["fleet-data"]["S3UploadMode"] == "EndOfJob"
    script, *argv = req["AppSpecification"]["ContainerArguments"]
    assert script == "stream/quality_job.py" and script in processing.SCRIPTS
    args = quality_job.parse_args(argv)  # the job's own parser takes them (it exits 2 on anything else)
    rule = c.decision_rule()
    assert (args.horizon, args.lead, args.cap) == (rule.horizon, 0.0, 125.0)
    assert (args.metric_namespace, args.endpoint_name) == (f"{c.project}/Quality", c.endpoint.name)
    assert str(args.answers) == "/opt/ml/processing/input/answers" and str(args.output).endswith("/report")
    assert (args.profile, args.subset) == (c.profile, c.subset)
    assert str(args.readings) == "/opt/ml/processing/input/readings"
    assert str(args.fleet_data_output) == outputs["fleet-data"]["LocalPath"]


def test_fleet_histories_start_no_training_run(loop: Any) -> None:
    """The raw-upload rule matches the dataset's ready marker only; the job role may put only fleet-*
    objects under the train file's folder, so the marker is out of its reach."""
    c, q = loop.built.config, loop.built.monitoring.quality
    (rule,) = [r["Properties"] for r in loop.resources("-Training", "AWS::Events::Rule").values()
               if "Object Created" in r["Properties"]["EventPattern"].get("detail-type", [])]
    keys = rule["EventPattern"]["detail"]["object"]["key"]
    assert keys == [f"raw/{c.dataset}/{c.triggers.ready_marker}"]
    resolver = iam.Resolver(loop.templates, c.region)
    statements = resolver.role_statements()[iam.construct_key(q.job_role)]
    data = c.bucket_name("data", iam.ACCOUNT)
    history = f"arn:aws:s3:::{data}/raw/{c.dataset}/train_FD001/fleet-7-0.txt"
    assert iam.allowed(statements, "s3:PutObject", history)
    for key in (keys[0], f"raw/{c.dataset}/train_FD001/part-00000.txt.gz", f"raw/{c.dataset}/test_FD001.txt"):
        assert not iam.allowed(statements, "s3:PutObject", f"arn:aws:s3:::{data}/{key}")


def test_alarms_watch_the_latest_versions_coverage_and_rmse(loop: Any) -> None:
    c = loop.built.config
    alarms = {r["Properties"]["AlarmName"]: r["Properties"] for r in loop.resources("-Monitoring",
                                                                                      "AWS::CloudWatch::Alarm").values()}
    name = c.endpoint.name
    low, high, rmse = alarms[f"{name}-coverage-low"], alarms[f"{name}-coverage-high"], alarms[f"{name}-rmse-high"]
    assert (low["MetricName"], low["Threshold"], low["ComparisonOperator"]) == ("Coverage80", c.quality.coverage_min,
                                                                               "LessThanThreshold")
    assert (high["Threshold"], high["ComparisonOperator"]) == (c.quality.coverage_max, "GreaterThanThreshold")
    assert (rmse["MetricName"], rmse["Threshold"]) == ("RMSECapped", c.quality.max_rmse)
    for a in (low, high, rmse):
        assert a["Namespace"] == f"{c.project}/Quality" and a["TreatMissingData"] == "notBreaching"
        assert a["Dimensions"] == [{"Name": "EndpointName", "Value": name}] and len(a["AlarmActions"]) == 1
    rules = [r["Properties"] for r in loop.resources("-Monitoring", "AWS::Events::Rule").values()]
    assert len(rules) == 2  # drift's and quality's: the same rule, one per check
    quality = next(r for r in rules if len(r["EventPattern"]["resources"]) == 3)
    (target,) = quality["Targets"]
    assert json.loads(target["Input"]) == c.retrain_input


def test_risk_events_reach_the_topic_through_the_bus(loop: Any) -> None:
    c = loop.built.config
    (bus,) = loop.resources("-Endpoint", "AWS::Events::EventBus").values()
    assert bus["Properties"]["Name"] == f"{c.project}-decisions"
    (rule,) = loop.resources("-Endpoint", "AWS::Events::Rule").values()
    p = rule["Properties"]
    assert p["EventPattern"] == {"source": [f"{c.project}.decisions"],
                                 "detail-type": ["AssetAtRisk", "AssetRiskCleared"]}
    (variables,) = [f["Properties"]["Environment"]["Variables"] for f in loop.resources(
        "-Endpoint", "AWS::Lambda::Function").values() if "DECISION_RULE" in f["Properties"]["Environment"]["Variables"]]
    rule_doc = json.loads(variables["DECISION_RULE"])
    assert rule_doc == {"horizon": 30.0, "threshold": 0.1, "min_lead": None}
    # the topic's key lets EventBridge publish (only when notify is on)
    key = next(r for r in loop.resources("-Data", "AWS::KMS::Key").values())
    sids = [s.get("Sid") for s in key["Properties"]["KeyPolicy"]["Statement"]]
    assert "EventBridgePublishesRiskEventsToTheEncryptedTopic" in sids


@pytest.mark.parametrize(("override", "message"), [
    ({"schedule": "daily"}, "predmaint.quality.schedule"),
    ({"coverage_min": 0.9, "coverage_max": 0.8}, "coverage_min"),
    ({"coverage_max": 1.5}, "predmaint.quality.coverage_max"),
    ({"max_rmse": 0}, "predmaint.quality.max_rmse"),
    ({"enabled": False, "retrain_on_alarm": True}, "retrain_on_alarm needs"),
    ({"bounds": 3}, "bounds"),
    ({"fleet_training_data": "yes"}, "predmaint.quality.fleet_training_data: must be true or false"),
    ({"fleet_training_data": True}, "fleet_training_data needs predmaint.stream.enabled"),
])
def test_quality_config_is_checked(override: dict[str, Any], message: str) -> None:
    doc = copy.deepcopy(CDK_CONTEXT["predmaint"])
    doc["quality"].update(override)
    with pytest.raises(ConfigError, match=message):
        AppConfig.from_dict(doc)


def test_notify_is_a_boolean_beside_the_rule() -> None:
    doc = copy.deepcopy(CDK_CONTEXT["predmaint"])
    doc["decisions"]["notify"] = "yes"
    with pytest.raises(ConfigError, match=r"predmaint\.decisions\.notify: must be true or false"):
        AppConfig.from_dict(doc)
    doc["decisions"]["notify"] = True
    assert AppConfig.from_dict(doc).decision_rule().threshold == 0.1
