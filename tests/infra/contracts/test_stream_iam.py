"""IAM of the stream, sufficient and least (as test_iam.py checks the pipeline's principals): the
score Lambda's role and the rebuild job's role allow every request they make at run time and grant
nothing no request uses; the state machine may start the rebuild job and pass its role.

The requests come from the synthesized stream-enabled app and from the boto3 calls the real code
makes against moto with the deployment's names: the score Lambda's own functions (model info,
state reads and conditional writes, archive writes, InvokeEndpoint, PutEvents to the decisions bus) and the rebuild job's
(Scan, the archive read per asset, GetItem/PutItem merges); the event source mapping's reads of the
stream and its on-failure destination, and the Lambda runtime's logs, tracing and environment,
are added from AWS's documentation. The table, stream and queue are encrypted with the project's
customer managed key: DynamoDB uses it on the caller's behalf (kms:Decrypt/Encrypt/GenerateDataKey/
DescribeKey through DynamoDB), a Kinesis consumer needs kms:Decrypt, an SQS producer
kms:GenerateDataKey and kms:Decrypt.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from predmaint.modules import load_module
from tests.infra.contracts import iam
from tests.infra.contracts.iam import construct_key
from tests.infra.contracts.needs import Needs, call_needs, parameters, state_machine_needs
from tests.infra.contracts.shapes import assert_calls_valid, recording_calls

REPO = Path(__file__).resolve().parents[3]
LAMBDA_DOC = "Lambda: Kinesis event source (with-kinesis.html#events-kinesis-permissions)"
KINESIS_KMS_DOC = "Kinesis: consumers of an encrypted stream need kms:Decrypt (permissions-user-key-KMS.html)"
SQS_KMS_DOC = "SQS: producers to an encrypted queue need kms:GenerateDataKey and kms:Decrypt (sqs-key-management.html)"
RUN_ID = "20261130-120000-c0de"


def _fp() -> str:
    return "f" * 16


@pytest.fixture(scope="module")
def world(stream_synth: Any) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from training_src.stream import archive, model_api, rebuild_job, state

    synth = stream_synth
    c, t, s = synth.built.config, synth.built.training, synth.built.endpoint.stream
    resolver = iam.Resolver(synth.templates, c.region)
    statements = resolver.role_statements()
    principals = {"state machine": construct_key(t.pipeline.role), "rebuild job": construct_key(t.roles.stream_rebuild),
                  "score Lambda": construct_key(s.score.role)}
    stack, logical = construct_key(t.state_machine).split("/")
    definition = json.loads(resolver.resolve(stack, synth.templates[stack]["Resources"][logical]["Properties"]
                                             ["DefinitionString"]))
    key = next(st["Resource"] for st in statements[principals["state machine"]] if st.get("Action") == "kms:DescribeKey")
    artifacts, table = c.bucket_name("artifacts", iam.ACCOUNT), c.stream_table_name
    n = Needs(c.region, {artifacts: key}, {table: key})

    # the pipeline's rebuild step: the state machine starts it, SageMaker runs it as the rebuild role
    rebuild_arn = resolver.get_att(*principals["rebuild job"].split("/"), "Arn")
    step = {"States": {"RebuildStreamState": definition["States"]["RebuildStreamState"]}}
    state_input = {"plan": {"jobs": {"stream_rebuild": f"{c.job_prefix}-rebuild-{RUN_ID}"}},
                   "promotion": {"model_data_url": f"s3://{artifacts}/models/{RUN_ID}/model.tar.gz"}}
    image = parameters(step["States"]["RebuildStreamState"]["Parameters"], state_input)["AppSpecification"]["ImageUri"]
    from stacks.images import ecr_repository_arn

    state_machine_needs(n, step, state_input, {"pipeline": principals["state machine"],
                                               rebuild_arn: principals["rebuild job"]}, lambda uri: {},
                        ecr_repository_arn(image))

    env = resolver.resolve(cdk_stack(s.score.function), synth.templates[cdk_stack(s.score.function)]["Resources"][
        logical_id(s.score.function)]["Properties"]["Environment"]["Variables"])
    score = load_module(REPO / "lambda/score/handler.py", "stream_iam_score_handler")
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": c.region}
    with mock.patch.dict(os.environ, creds), mock_aws():
        ddb, s3 = boto3.client("dynamodb", region_name=c.region), boto3.client("s3", region_name=c.region)
        runtime = boto3.client("sagemaker-runtime", region_name=c.region)
        events = boto3.client("events", region_name=c.region)
        events.create_event_bus(Name=env["EVENT_BUS"])
        s3.create_bucket(Bucket=artifacts, CreateBucketConfiguration={"LocationConstraint": c.region})
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "asset_id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "asset_id", "KeyType": "HASH"}])
        info = model_api.ModelInfo(fingerprint=_fp(), window=3, time_column="cycle", required=("s",), reads_life=True,
                                   warning="w", max_body_bytes=6_000_000, max_instances=100, max_readings=1000)
        bucket, _, info_key = env["MODEL_INFO_URI"].removeprefix("s3://").partition("/")
        s3.put_object(Bucket=bucket, Key=info_key, Body=info.to_json().encode())
        st = state.AssetState("engine-1", version=1, last=5.0, taken=2, tail=({"cycle": 4.0, "s": 1.0},
                                                                             {"cycle": 5.0, "s": 1.0}))
        ddb.put_item(TableName=table, Item=state.to_item(st))
        body = json.dumps({"predictions": [{"asset_id": "engine-1", "rul": 1.0}], "model_version": "v"}).encode()

        def invoke(params: Any, **_: Any) -> Any:
            from botocore.response import StreamingBody

            return (SimpleNamespace(status_code=200, headers={}),
                    {"Body": StreamingBody(io.BytesIO(body), len(body)), "ResponseMetadata": {"HTTPStatusCode": 200}})

        runtime.meta.events.register("before-call.sagemaker-runtime.InvokeEndpoint", invoke)
        # the score Lambda's calls, through its own functions and the deployment's environment
        with recording_calls() as score_calls:
            got = score._model_info(s3, env["MODEL_INFO_URI"])
            stored = score._dynamo_load(ddb, env["TABLE_NAME"], ["engine-1", "engine-2"])
            score.EndpointScorer(runtime, env["ENDPOINT_NAME"])([{"asset_id": "engine-1", "readings": []}])
            s3.put_object(Bucket=env["ARCHIVE_BUCKET"], Key=env["ARCHIVE_PREFIX"] + "readings/asset=engine-1/"
                          "day=2026-11-30/1-2.jsonl", Body=b"{}\n")
            assert score._dynamo_write(ddb, env["TABLE_NAME"], state.AssetState(**{**st.__dict__, "version": 2}))
            risk = {"type": "AssetAtRisk", "asset_id": "engine-1", "life": 0, "time": 5.0, "rul": 1.0}
            refused = score.publish_entries(lambda batch: events.put_events(Entries=batch), [
                score.event_entry(risk, bus=env["EVENT_BUS"], source=env["EVENT_SOURCE"])])
        assert got == info and set(stored) == {"engine-1"} and refused == set()
        # the rebuild job's calls (its arguments are the pipeline step's)
        args = step["States"]["RebuildStreamState"]["Parameters"]["AppSpecification"]["ContainerArguments"]
        opts = dict(zip(args[::2], args[1::2], strict=True))
        s3.put_object(Bucket=artifacts, Key=opts["--archive"].split("/", 3)[3] +
                      archive.asset_prefix("engine-1") + "day=2026-11-30/1-2.jsonl", Body=b"{}\n")
        with recording_calls() as rebuild_calls:
            states, errors = rebuild_job.scan_states(ddb, opts["--table"])
            lines = list(rebuild_job.s3_lines_in(s3, opts["--archive"])("engine-1"))
            rebuilt = state.AssetState("engine-1", last=5.0, summaries={_fp(): {"model": _fp(), "last": 5.0}})
            done = rebuild_job.commit(ddb, opts["--table"], {"engine-1": rebuilt}, _fp())
        assert len(states) == 1 and not errors and lines == ["{}"] and done == 1
    assert_calls_valid(score_calls + rebuild_calls)
    for call in score_calls:
        call_needs(n, principals["score Lambda"], call)
    for call in rebuild_calls:
        call_needs(n, principals["rebuild job"], call)

    # the event source mapping reads the stream and sends failures to the queue as the function's role
    who = principals["score Lambda"]
    stream_arn = resolver.get_att(cdk_stack(s.stream), logical_id(s.stream), "Arn")
    queue_arn = resolver.get_att(cdk_stack(s.failures), logical_id(s.failures), "Arn")
    n.add(who, "event source mapping: Kinesis", ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary",
                                                  "kinesis:GetRecords", "kinesis:GetShardIterator",
                                                  "kinesis:ListShards"], [stream_arn], source=LAMBDA_DOC)
    n.add(who, "event source mapping: Kinesis", ["kms:Decrypt"], [key], source=KINESIS_KMS_DOC)
    n.add(who, "event source mapping: on-failure destination", ["sqs:SendMessage"], [queue_arn], source=LAMBDA_DOC)
    n.add(who, "event source mapping: on-failure destination", ["kms:GenerateDataKey", "kms:Decrypt"], [key],
          source=SQS_KMS_DOC)
    group = resolver.get_att(*construct_key(s.score.log_group).split("/"), "Arn")
    n.add(who, "Lambda runtime: logs", ["logs:CreateLogStream", "logs:PutLogEvents"],
          [group.removesuffix("*") + "log-stream:2026/11/30/[$LATEST]0a1b"], source="Lambda: execution role")
    n.add(who, "Lambda runtime: active tracing", ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"],
          source="Lambda: active tracing (services-xray.html)")
    n.add(who, "Lambda runtime: encrypted environment", ["kms:Decrypt"], [key],
          source="Lambda: environment variable encryption (configuration-envvars-encryption.html)")
    return {"principals": principals, "statements": statements, "needs": n.items}


def cdk_stack(construct: Any) -> str:
    import aws_cdk as cdk

    return cdk.Stack.of(construct).stack_name


def logical_id(construct: Any) -> str:
    import aws_cdk as cdk

    child = construct.node.default_child or construct
    return cdk.Stack.of(construct).get_logical_id(child)


def test_every_request_of_the_streams_principals_is_allowed(world: dict[str, Any]) -> None:
    names = {v: k for k, v in world["principals"].items()}
    missing = [f"{names[need.principal]}: {need}  [{need.source}]" for need in world["needs"]
               if not iam.allowed(world["statements"][need.principal], need.action, need.resource, need.context)]
    assert not missing, "denied at run time:\n" + "\n".join(sorted(set(missing)))
    kinds = {(names[nd.principal], nd.action) for nd in world["needs"]}
    assert {("score Lambda", "dynamodb:PutItem"), ("score Lambda", "sagemaker:InvokeEndpoint"),
            ("score Lambda", "events:PutEvents"),
            ("rebuild job", "dynamodb:Scan"), ("rebuild job", "s3:ListBucket"),
            ("state machine", "iam:PassRole")} <= kinds


@pytest.mark.parametrize("who", ["rebuild job", "score Lambda"])
def test_nothing_is_granted_that_no_request_uses(world: dict[str, Any], who: str) -> None:
    """Least privilege for the two roles the stream adds (the state machine's other grants are
    checked by test_iam.py)."""
    principal = world["principals"][who]
    unused = iam.unused_grants(world["statements"][principal], [n for n in world["needs"] if n.principal == principal])
    assert not unused, f"{who}: granted but never used:\n" + "\n".join(unused)


@pytest.mark.parametrize("who", ["rebuild job", "score Lambda"])
def test_every_granted_action_and_resource_is_one_aws_defines(world: dict[str, Any], who: str) -> None:
    problems = []
    for st in world["statements"][world["principals"][who]]:
        for action in iam._as_list(st["Action"]):
            for resource in iam._as_list(st["Resource"]):
                problems += [f"{who}: {p}" for p in iam.reference_problems(action, resource)]
    assert not problems, "\n".join(problems)
