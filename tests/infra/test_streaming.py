"""The stream construct (stacks/streaming.py) synthesized alone: what it creates, the event source
mapping's failure handling, least-privilege grants, and cdk-nag AwsSolutions with its findings
acknowledged one by one."""

from __future__ import annotations

import json

import pytest

from tests.infra.conftest import CDK_CONTEXT


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    import aws_cdk as cdk
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks

    from stacks.config import AppConfig
    from stacks.nag import ack, stream_findings
    from stacks.streaming import StreamScoring

    out = tmp_path_factory.mktemp("stream-synth")
    app = cdk.App(context=CDK_CONTEXT, outdir=str(out))
    config = AppConfig.from_context(app.node.get_all_context())
    stack = cdk.Stack(app, "StreamTest", env=cdk.Environment(region=config.region))
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    artifacts = s3.Bucket.from_bucket_name(stack, "Artifacts", config.bucket_name("artifacts", "123456789012"))
    built = StreamScoring(stack, "Stream", config=config, key=key, artifacts=artifacts)
    for scope, finding, reason in stream_findings(config, built, "123456789012"):
        ack(scope, finding, reason)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()
    return Template.from_stack(stack), json.loads((out / "validation-report.json").read_text()), built


def test_stream_table_queue_and_mapping(synthesized):
    template, _, _ = synthesized
    template.has_resource_properties("AWS::Kinesis::Stream", {
        "StreamModeDetails": {"StreamMode": "ON_DEMAND"}, "StreamEncryption": {"EncryptionType": "KMS"}})
    template.has_resource_properties("AWS::DynamoDB::Table", {
        "BillingMode": "PAY_PER_REQUEST", "KeySchema": [{"AttributeName": "asset_id", "KeyType": "HASH"}],
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS"},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}})
    template.has_resource_properties("AWS::SQS::Queue", {"KmsMasterKeyId": {}})
    mappings = template.find_resources("AWS::Lambda::EventSourceMapping")
    (m,) = [r["Properties"] for r in mappings.values()]
    assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and m["BisectBatchOnFunctionError"] is True
    assert m["BatchSize"] == 500 and m["MaximumBatchingWindowInSeconds"] == 5 and m["MaximumRetryAttempts"] == 10
    assert "OnFailure" in m["DestinationConfig"] and m["StartingPosition"] == "TRIM_HORIZON"


def test_the_score_function_may_do_what_it_does_and_no_more(synthesized):
    template, _, built = synthesized
    stack = built.score.role.stack
    role_id = stack.get_logical_id(built.score.role.node.default_child)
    policies = [p["Properties"] for p in template.find_resources("AWS::IAM::Policy").values()
                if {"Ref": role_id} in p["Properties"]["Roles"]]
    actions = {a for p in policies for st in p["PolicyDocument"]["Statement"]
               for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    needed = {"dynamodb:BatchGetItem", "dynamodb:PutItem", "s3:PutObject", "s3:GetObject",
              "sagemaker:InvokeEndpoint", "kinesis:GetRecords", "kinesis:GetShardIterator",
              "kinesis:DescribeStream", "kinesis:ListShards", "sqs:SendMessage", "kms:Decrypt",
              "kms:GenerateDataKey", "logs:PutLogEvents"}
    assert needed <= actions, needed - actions
    # the only wildcard actions: the KMS data-key actions CDK's SqsDlq grants for the encrypted queue
    assert {a for a in actions if a.endswith("*")} <= {"kms:GenerateDataKey*", "kms:ReEncrypt*"}, actions
    assert not {a for a in actions if a.startswith(("dynamodb:Delete", "dynamodb:Scan", "s3:Delete"))}


def test_cdk_nag_is_clean(synthesized):
    _, report, _ = synthesized
    (plugin,) = report["pluginReports"]
    assert plugin["conclusion"] == "success" and plugin["violations"] == []
    used = {v["acknowledgedId"] for v in plugin["suppressedViolations"]}
    from stacks.config import AppConfig
    from stacks.nag import stream_findings

    _, _, built = synthesized
    findings = {f for _, f, _ in stream_findings(AppConfig(), built, "123456789012")}
    assert findings == used  # every acknowledgment is used, none is missing


@pytest.mark.slow
def test_the_app_with_the_stream_enabled_is_nag_clean(tmp_path):
    """``predmaint.stream.enabled``: the endpoint stack gets the construct, and the whole app still
    synthesizes with every AwsSolutions finding acknowledged (off by default: the other stacks'
    templates and snapshots do not change)."""
    from tests.infra.conftest import synth_app

    synth = synth_app(tmp_path, {**CDK_CONTEXT, "predmaint.stream.enabled": "true"})
    report = json.loads((tmp_path / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert plugin["conclusion"] == "success" and plugin["violations"] == []
    endpoint = synth.templates[synth.built.endpoint.stack_name]["Resources"]
    kinds = {r["Type"] for r in endpoint.values()}
    assert {"AWS::Kinesis::Stream", "AWS::DynamoDB::Table", "AWS::Lambda::EventSourceMapping",
            "AWS::SQS::Queue"} <= kinds
    assert synth.built.endpoint.stream is not None
