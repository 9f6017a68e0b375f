"""The stateful scoring path on AWS (docs/streaming.md): Kinesis -> score Lambda -> DynamoDB + S3.

- ``Telemetry``: a Kinesis Data Stream, on demand, encrypted with the project key; one record = one
  asset's new readings (or an event), partition key = asset id;
- ``Assets``: the state table (``asset_id`` S key; items ``version`` N, ``doc`` S), on demand,
  encrypted with the project key, point-in-time recovery;
- ``Score``: lambda/score/handler.py on the stream: batches of up to ``BATCH_SIZE`` records within
  a short batching window, ``ReportBatchItemFailures``, ``BisectBatchOnFunctionError``, bounded
  retries and record age, and an on-failure destination (``Failures``, an SQS queue encrypted with
  the project key, TLS only);
- ``Decisions``: an EventBridge bus the function publishes the decision rule's risk events to
  (``PutEvents``, source ``<project>.decisions``, detail-types ``AssetAtRisk``/``AssetRiskCleared``,
  docs/decisions.md); with ``predmaint.decisions.notify`` a rule on it sends them to the project's
  notifications topic;
- least privilege: the function reads the stream (the event source's grant), reads and writes
  items of the one table (``BatchGetItem``, ``PutItem``), writes the archive prefix and reads the
  model info object of the artifacts bucket, invokes the one endpoint, puts events on the one bus,
  and uses the project key.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
import jsii
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import STREAM_ARCHIVE_PREFIX, STREAM_HORIZON_CYCLES, STREAM_MODEL_INFO_KEY, AppConfig
from stacks.functions import PipelineFunction
from stacks.roles import arn, dynamodb_key_use, use_key

BATCH_SIZE = 500
#: the risk events' detail-types (training_src/stream/decisions.py AT_RISK, CLEARED)
RISK_DETAIL_TYPES = ("AssetAtRisk", "AssetRiskCleared")


def event_source(config: AppConfig) -> str:
    """The ``source`` of the risk events on the decisions bus."""
    return f"{config.project}.decisions"


def decisions_bus_name(config: AppConfig) -> str:
    return f"{config.project}-decisions"


class StreamScoring(Construct):
    """Stream, state table, scoring function with its event source mapping and failure queue."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, key: kms.IKey,
                 artifacts: s3.IBucket, topic: sns.ITopic | None = None) -> None:
        super().__init__(scope, construct_id)
        c = config
        rule = c.decision_rule()
        self.bus = events.EventBus(self, "Decisions", event_bus_name=decisions_bus_name(c),
                                   description="risk events of the stream's decision rule (docs/decisions.md)")
        self.stream = kinesis.Stream(
            self, "Telemetry", stream_name=f"{c.project}-telemetry", stream_mode=kinesis.StreamMode.ON_DEMAND,
            encryption=kinesis.StreamEncryption.KMS, encryption_key=key, retention_period=cdk.Duration.days(7))
        self.table = dynamodb.Table(
            self, "Assets", table_name=c.stream_table_name,
            partition_key=dynamodb.Attribute(name="asset_id", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST, encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key, point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            removal_policy=cdk.RemovalPolicy.RETAIN)
        self.failures = sqs.Queue(
            self, "Failures", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, enforce_ssl=True,
            retention_period=cdk.Duration.days(14))
        self.score = PipelineFunction(
            self, "Score", name="score", config=c, key=key, timeout=cdk.Duration.minutes(2), memory_mb=1024,
            description="stream records -> each asset's state, the endpoint's answers, the archive",
            environment={"TABLE_NAME": self.table.table_name, "ARCHIVE_BUCKET": artifacts.bucket_name,
                         "ARCHIVE_PREFIX": STREAM_ARCHIVE_PREFIX, "ENDPOINT_NAME": c.endpoint.name,
                         "MODEL_INFO_URI": artifacts.s3_url_for_object(STREAM_MODEL_INFO_KEY),
                         # failure_probability's H is the rule's (local mode does the same), so the
                         # threshold applies to the probability it was set for
                         "HORIZON": f"{rule.horizon if rule.horizon is not None else STREAM_HORIZON_CYCLES:g}",
                         "TIME_COLUMN": _time_column(c),
                         "MAX_INSTANCES": str(c.endpoint.max_instances_per_request),
                         "DECISION_RULE": json.dumps({"horizon": rule.horizon, "threshold": rule.threshold,
                                                      "min_lead": rule.min_lead}),
                         "EVENT_BUS": self.bus.event_bus_name, "EVENT_SOURCE": event_source(c)})
        # every grant written out (checked in tests/infra/contracts/test_stream_iam.py): CDK's
        # KinesisEventSource and SqsDlq would add actions nothing calls (ListStreams, SubscribeToShard,
        # GetQueueUrl, kms:ReEncrypt* ...), so the mapping is made directly
        self.score.grant(["dynamodb:BatchGetItem", "dynamodb:PutItem"], [self.table.table_arn])
        self.score.grant(["s3:PutObject"], [artifacts.arn_for_objects(STREAM_ARCHIVE_PREFIX + "*")])
        self.score.grant(["s3:GetObject"], [artifacts.arn_for_objects(STREAM_MODEL_INFO_KEY)])
        self.score.grant(["sagemaker:InvokeEndpoint"], [arn(self, "sagemaker", f"endpoint/{c.endpoint.name}")])
        self.score.grant(["events:PutEvents"], [self.bus.event_bus_arn])
        self.notify = None
        if c.decisions.notify:
            if topic is None:
                raise ValueError("predmaint.decisions.notify needs the notifications topic")
            self.notify = events.Rule(
                self, "NotifyRisk", event_bus=self.bus, description="risk events to the notifications topic",
                event_pattern=events.EventPattern(source=[event_source(c)], detail_type=list(RISK_DETAIL_TYPES)),
                targets=[targets.SnsTopic(topic)])
        # the event source mapping reads the stream and sends failures to the queue as this role
        # (Lambda: with-kinesis.html, execution role permissions; on-failure destinations: sqs:SendMessage)
        self.score.grant(["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
                          "kinesis:GetShardIterator", "kinesis:ListShards"], [self.stream.stream_arn])
        self.score.grant(["sqs:SendMessage"], [self.failures.queue_arn])
        # the project key: S3 objects (GenerateDataKey to write, Decrypt to read), the stream's records
        # (Decrypt), the queue's messages (GenerateDataKey, Decrypt), the function's environment (Decrypt)
        self.score.role.add_to_policy(use_key(key, ("kms:Decrypt", "kms:GenerateDataKey")))
        # the table's customer managed key, as DynamoDB uses it on the caller's behalf
        self.score.role.add_to_policy(dynamodb_key_use(self, key))
        self.mapping = self.score.function.add_event_source_mapping(
            "Telemetry", event_source_arn=self.stream.stream_arn,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON, batch_size=BATCH_SIZE,
            max_batching_window=cdk.Duration.seconds(5), report_batch_item_failures=True,
            bisect_batch_on_error=True, retry_attempts=10, max_record_age=cdk.Duration.days(1),
            on_failure=_QueueOnFailure(self.failures))


def _time_column(c: AppConfig) -> str:
    """The profile's time field: what the score Lambda needs to keep readings before any model info."""
    from training_src.profiles import load_profile

    return load_profile(c.profile, c.subset).time_column or ""


@jsii.implements(lambda_.IEventSourceDlq)
class _QueueOnFailure:
    """The event source mapping's on-failure destination: the queue, granted by the caller (CDK's
    ``SqsDlq`` also grants sqs:GetQueueAttributes/GetQueueUrl and the key's ReEncrypt*, unused)."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(self, target: lambda_.IEventSourceMapping, target_handler: lambda_.IFunction
             ) -> lambda_.DlqDestinationConfig:
        return lambda_.DlqDestinationConfig(destination=self.queue.queue_arn)

