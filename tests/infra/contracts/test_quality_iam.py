"""IAM of the scheduled quality check (stacks/quality_monitor.py), sufficient and least, as test_iam.py checks
the drift check's: the schedule fires once in moto against an archive holding answers, outcomes and risk
events; the deployed starter function (its environment from the template) runs on the schedule's own input,
every boto3 call recorded; the job it starts is modelled from its request (inputs listed and read, outputs
written with the key, container image, logs) and from the job's own PutMetricData, sent by
``quality_job.publish`` in moto. With ``quality.fleet_training_data`` (on in this synth) the job also reads
the archive's readings and puts the failed lives' histories into the data bucket, under the names
``failures.object_name`` gives. The requests pass botocore's models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from predmaint.modules import load_module
from tests.infra.contracts import iam
from tests.infra.contracts.iam import construct_key, function_env
from tests.infra.contracts.needs import (
    SAGEMAKER_ROLE_DOC,
    SCHEDULER_DOC,
    Needs,
    _processing_job_needs,
    call_needs,
    drift_schedule_event,
)
from tests.infra.contracts.shapes import assert_calls_valid, recording_calls

REPO = Path(__file__).resolve().parents[3]
WHO = ("quality schedule", "quality job", "quality starter Lambda")


class _Context:
    function_name, memory_limit_in_mb, aws_request_id = "fn", 256, "req-1"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:fn"


@pytest.fixture(scope="module")
def world(stream_synth: Any) -> dict[str, Any]:
    import aws_cdk as cdk
    import boto3
    from moto import mock_aws

    from stacks.images import ecr_repository_arn
    from training_src.profiles import load_profile
    from training_src.stream import failures, quality_job

    synth = stream_synth
    c, q = synth.built.config, synth.built.monitoring.quality
    assert q is not None, "the quality check is on by default with the stream"
    resolver = iam.Resolver(synth.templates, c.region)
    statements = resolver.role_statements()
    principals = {"quality schedule": construct_key(q.scheduler_role), "quality job": construct_key(q.job_role),
                  "quality starter Lambda": construct_key(q.starter.role)}
    key = next(st["Resource"] for st in statements[principals["quality starter Lambda"]]
               if st.get("Action") == "kms:Decrypt")  # the project key (the function's environment)
    artifacts, data = c.bucket_name("artifacts", iam.ACCOUNT), c.bucket_name("data", iam.ACCOUNT)
    n = Needs(c.region, {artifacts: key, data: key})
    stack = cdk.Stack.of(q.schedule)
    schedule = synth.templates[stack.stack_name]["Resources"][stack.get_logical_id(q.schedule)]
    resolve = lambda v: resolver.resolve(stack.stack_name, v)  # noqa: E731
    event = drift_schedule_event(schedule, resolve)
    env = {**function_env(resolver, synth, q.starter), "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": c.region, "AWS_REGION": c.region,
           "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "contract"}
    starter = load_module(REPO / "lambda/quality/handler.py", "contract_quality_handler")
    with mock.patch.dict(os.environ, env), mock_aws():
        s3 = boto3.client("s3", region_name=c.region)
        s3.create_bucket(Bucket=artifacts, CreateBucketConfiguration={"LocationConstraint": c.region})
        for part in ("answers/day=2026-12-06/asset=e1", "outcomes/day=2026-12-06", "risk/day=2026-12-06",
                     "readings/asset=e1/day=2026-12-06"):
            s3.put_object(Bucket=artifacts, Key=f"stream/archive/{part}/1-2.jsonl", Body=b"{}\n")
        with recording_calls() as starter_calls:
            answer = starter.handler(event, _Context())
        (request,) = [call.params for call in starter_calls if call.operation == "CreateProcessingJob"]
        args = request["AppSpecification"]["ContainerArguments"]
        namespace = args[args.index("--metric-namespace") + 1]
        report = {"latest_version": "v1", "versions": {"v1": {"rmse": 20.0, "coverage": 0.8, "failures": 3}}}
        with recording_calls() as job_calls:
            quality_job.publish(boto3.client("cloudwatch", region_name=c.region), namespace,
                                quality_job.metric_data(report, c.endpoint.name))
    assert answer["status"] == "started" and answer["inputs"] == ["code", "answers", "outcomes", "risk", "readings"]
    assert_calls_valid(starter_calls + job_calls)
    who = principals["quality starter Lambda"]
    for call in starter_calls:
        call_needs(n, who, call)
    for call in job_calls:
        call_needs(n, principals["quality job"], call)
    group = resolver.get_att(*construct_key(q.starter.log_group).split("/"), "Arn")
    n.add(who, "Lambda runtime: logs", ["logs:CreateLogStream", "logs:PutLogEvents"],
          [group.removesuffix("*") + "log-stream:2026/12/06/[$LATEST]0a1b"], source="Lambda: execution role")
    n.add(who, "Lambda runtime: active tracing", ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"],
          source="Lambda: active tracing (services-xray.html)")
    n.add(who, "Lambda runtime: encrypted environment", ["kms:Decrypt"], [key],
          source="Lambda: environment variable encryption (configuration-envvars-encryption.html)")
    n.add(principals["quality schedule"], "QualitySchedule: Lambda Invoke", ["lambda:InvokeFunction"],
          [resolve(schedule["Properties"]["Target"]["Arn"])], source=SCHEDULER_DOC)
    # the fleet-data output holds only the histories, named as failures.object_name names them
    outputs = request["ProcessingOutputConfig"]["Outputs"]
    (fleet_data,) = [o["S3Output"]["S3Uri"] for o in outputs if o["OutputName"] == "fleet-data"]
    modelled = {**request, "ProcessingOutputConfig": {
        **request["ProcessingOutputConfig"], "Outputs": [o for o in outputs if o["OutputName"] != "fleet-data"]}}
    _processing_job_needs(n, principals["quality job"], "QualityCheck", modelled, lambda uri: [],
                          ecr_repository_arn(request["AppSpecification"]["ImageUri"]))
    name = failures.object_name("e1", 0, load_profile(c.profile, c.subset))
    n.s3_write(principals["quality job"], "QualityCheck: output fleet-data", f"{fleet_data}/{name}",
               SAGEMAKER_ROLE_DOC, multipart=True)
    return {"principals": principals, "statements": statements, "needs": n.items, "request": request}


def test_every_request_of_the_quality_checks_principals_is_allowed(world: dict[str, Any]) -> None:
    names = {v: k for k, v in world["principals"].items()}
    missing = [f"{names[need.principal]}: {need}  [{need.source}]" for need in world["needs"]
               if need.principal in names and not iam.allowed(world["statements"][need.principal], need.action,
                                                               need.resource, need.context)]
    assert not missing, "denied at run time:\n" + "\n".join(sorted(set(missing)))
    kinds = {(names[nd.principal], nd.action) for nd in world["needs"]}
    assert {("quality starter Lambda", "sagemaker:CreateProcessingJob"), ("quality starter Lambda", "iam:PassRole"),
            ("quality job", "cloudwatch:PutMetricData"), ("quality job", "s3:ListBucket"),
            ("quality schedule", "lambda:InvokeFunction")} <= kinds
    data = next(nd.resource for nd in world["needs"] if nd.call == "QualityCheck: output fleet-data"
                and nd.action == "s3:PutObject")
    assert "/raw/cmapss/train_FD001/fleet-e1-0.txt" in data


@pytest.mark.parametrize("who", WHO)
def test_nothing_is_granted_that_no_request_uses(world: dict[str, Any], who: str) -> None:
    principal = world["principals"][who]
    unused = iam.unused_grants(world["statements"][principal], [n for n in world["needs"] if n.principal == principal])
    assert not unused, f"{who}: granted but never used:\n" + "\n".join(unused)


@pytest.mark.parametrize("who", WHO)
def test_every_granted_action_and_resource_is_one_aws_defines(world: dict[str, Any], who: str) -> None:
    problems = []
    for st in world["statements"][world["principals"][who]]:
        for action in iam._as_list(st["Action"]):
            for resource in iam._as_list(st["Resource"]):
                problems += [f"{who}: {p}" for p in iam.reference_problems(action, resource)]
    assert not problems, "\n".join(problems)
