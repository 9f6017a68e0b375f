"""Least-privilege IAM for SageMaker: one role for processing/training jobs, one for hosting.

Every statement names its actions explicitly (no ``*`` or ``Get*`` actions). Resource wildcards
appear only where the resource name is not known at synth time (objects under a prefix, job
names per run, log streams) or where the API has no resource-level permissions (ECR
GetAuthorizationToken, CloudWatch PutMetricData); app.py acknowledges each with its reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.config import STREAM_ARCHIVE_PREFIX, STREAM_MODEL_INFO_PREFIX, AppConfig

if TYPE_CHECKING:
    from stacks.network import NetworkStack
from stacks.images import ecr_repository_arn

S3_READ = ["s3:GetObject"]
#: reading a pinned object version (the prepare Lambda pins raw objects for lineage)
S3_READ_VERSIONS = ["s3:GetObject", "s3:GetObjectVersion"]
#: the project key as SageMaker containers use it: read and write SSE-KMS objects (kms:Encrypt: the
#: SageMaker API reference asks it of the execution role for OutputDataConfig/DataCaptureConfig KMS
#: keys) and encrypt their volumes (kms:CreateGrant)
SAGEMAKER_KEY_USE = ("kms:CreateGrant", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
S3_WRITE = ["s3:PutObject", "s3:AbortMultipartUpload"]
ECR_PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
#: where the promote Lambda keeps models that passed the gate (the runs/ prefix expires)
MODELS_PREFIX = "models/"
LOG_WRITE = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]


def arn(scope: Construct, service: str, resource: str) -> str:
    """``arn:<partition>:<service>:<region>:<account>:<resource>`` for the scope's stack."""
    stack = cdk.Stack.of(scope)
    return f"arn:{stack.partition}:{service}:{stack.region}:{stack.account}:{resource}"


def alarm_arns(scope: Construct, config: AppConfig) -> list[str]:
    """ARNs of the endpoint's two rollback alarms (``config.alarm_names``)."""
    return [arn(scope, "cloudwatch", f"alarm:{name}") for name in config.alarm_names]


def list_bucket(bucket: s3.IBucket, prefixes: list[str]) -> iam.PolicyStatement:
    """s3:ListBucket limited to key prefixes."""
    return iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
                               conditions={"StringLike": {"s3:prefix": [p + "*" for p in prefixes]}})


def use_key(key: kms.IKey, actions: tuple[str, ...] = ("kms:Decrypt", "kms:GenerateDataKey")) -> iam.PolicyStatement:
    """``actions`` on the project key (default: read and write SSE-KMS objects)."""
    return iam.PolicyStatement(actions=sorted(actions), resources=[key.key_arn])


def dynamodb_key_use(scope: Construct, key: kms.IKey) -> iam.PolicyStatement:
    """What DynamoDB does with a table's customer managed key on the caller's behalf: kms:Decrypt,
    Encrypt, GenerateDataKey, DescribeKey, through DynamoDB only (encryption.usagenotes.html)."""
    region = cdk.Stack.of(scope).region
    return iam.PolicyStatement(actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                               resources=[key.key_arn],
                               conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}})


def sagemaker_common(scope: Construct, image_uri: str, log_group_kinds: list[str]) -> list[iam.PolicyStatement]:
    """What any SageMaker container role needs: pull the one image, write its logs and metrics."""
    return [
        iam.PolicyStatement(actions=ECR_PULL, resources=[ecr_repository_arn(image_uri)]),
        iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(actions=LOG_WRITE, resources=[
            arn(scope, "logs", f"log-group:/aws/sagemaker/{kind}:*") for kind in log_group_kinds]),
        iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"],
                            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}}),
    ]


class SageMakerRoles(Construct):
    """``jobs`` runs processing and training jobs; ``hosting`` serves the endpoint's model;
    ``stream_rebuild`` (only with ``predmaint.stream.enabled``) runs the stream's rebuild job."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, data: s3.IBucket,
                 artifacts: s3.IBucket, key: kms.IKey, image_uri: str, source: s3_assets.Asset,
                 network: NetworkStack | None = None) -> None:
        super().__init__(scope, construct_id)
        principal = iam.ServicePrincipal("sagemaker.amazonaws.com")
        self.jobs = iam.Role(self, "JobsRole", assumed_by=principal,
                             description="SageMaker processing and training jobs of the training pipeline")
        statements = [
            list_bucket(data, ["raw/", "processed/"]),
            list_bucket(artifacts, ["runs/"]),
            iam.PolicyStatement(actions=S3_READ, resources=[data.arn_for_objects("raw/*"),
                                                            data.arn_for_objects("processed/*"),
                                                            artifacts.arn_for_objects("runs/*")]),
            iam.PolicyStatement(actions=S3_WRITE, resources=[data.arn_for_objects("processed/*"),
                                                             artifacts.arn_for_objects("runs/*")]),
            # the script-mode source (sourcedir.tar.gz) in the CDK asset bucket: that one object. Processing
            # jobs read it as an S3Prefix input, and SageMaker lists a prefix before downloading it
            iam.PolicyStatement(actions=["s3:GetObject"],
                                resources=[source.bucket.arn_for_objects(source.s3_object_key)]),
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[source.bucket.bucket_arn],
                                conditions={"StringEquals": {"s3:prefix": [source.s3_object_key]}}),
            use_key(key, SAGEMAKER_KEY_USE),
            *sagemaker_common(self, image_uri, ["ProcessingJobs", "TrainingJobs"]),
        ]
        for st in statements:
            self.jobs.add_to_policy(st)

        self.hosting = iam.Role(self, "HostingRole", assumed_by=principal,
                                description="SageMaker endpoint serving the champion model")
        for st in [
            # models that passed the gate are kept under models/<run-id>/ (runs/ expires)
            iam.PolicyStatement(actions=S3_READ, resources=[artifacts.arn_for_objects(f"{MODELS_PREFIX}*")]),
            iam.PolicyStatement(actions=["s3:PutObject"],
                                resources=[artifacts.arn_for_objects(f"data-capture/{config.endpoint.name}/*")]),
            use_key(key, SAGEMAKER_KEY_USE),
            *sagemaker_common(self, image_uri, [f"Endpoints/{config.endpoint.name}"]),
            # auto-rollback: "your IAM execution role" must be able to read the rollback alarms
            # (deployment-guardrails-configuration.html); which role is meant is not said, so the
            # model's execution role has it as well as the callers of UpdateEndpoint
            iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=alarm_arns(self, config)),
        ]:
            self.hosting.add_to_policy(st)
        self.stream_rebuild: iam.Role | None = None
        if config.stream.enabled:
            self.stream_rebuild = self._stream_rebuild_role(config, artifacts, key, image_uri, source, principal)
        if network is not None:  # VPC mode: SageMaker attaches ENIs in the project's subnets
            for role in self.roles:
                for st in network.eni_statements(self):
                    role.add_to_policy(st)

    @property
    def roles(self) -> list[iam.Role]:
        """Every SageMaker execution role of the pipeline."""
        return [self.jobs, self.hosting, *([self.stream_rebuild] if self.stream_rebuild else [])]

    def _stream_rebuild_role(self, config: AppConfig, artifacts: s3.IBucket, key: kms.IKey, image_uri: str,
                             source: s3_assets.Asset, principal: iam.IPrincipal) -> iam.Role:
        """The rebuild job's role (training_src/stream/rebuild_job.py): the code and the champion's model
        as inputs, the archive's readings read with ListObjectsV2/GetObject, the state table read and
        written item by item (Scan, GetItem, PutItem), the model info written as its output."""
        role = iam.Role(self, "StreamRebuildRole", assumed_by=principal,
                        description="SageMaker processing job rebuilding the stream's per-asset summaries")
        readings = f"{STREAM_ARCHIVE_PREFIX}readings/"
        table = arn(self, "dynamodb", f"table/{config.stream_table_name}")
        for st in [
            list_bucket(artifacts, [MODELS_PREFIX, readings]),
            iam.PolicyStatement(actions=S3_READ, resources=[artifacts.arn_for_objects(f"{MODELS_PREFIX}*"),
                                                            artifacts.arn_for_objects(f"{readings}*")]),
            iam.PolicyStatement(actions=S3_WRITE, resources=[artifacts.arn_for_objects(f"{STREAM_MODEL_INFO_PREFIX}*")]),
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[source.bucket.arn_for_objects(source.s3_object_key)]),
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[source.bucket.bucket_arn],
                                conditions={"StringEquals": {"s3:prefix": [source.s3_object_key]}}),
            iam.PolicyStatement(actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan"], resources=[table]),
            # S3 objects (SSE-KMS) and the processing volume as SageMaker uses the key for its jobs
            use_key(key, SAGEMAKER_KEY_USE),
            # the table's customer managed key, as DynamoDB uses it on the caller's behalf
            dynamodb_key_use(self, key),
            *sagemaker_common(self, image_uri, ["ProcessingJobs"]),
        ]:
            role.add_to_policy(st)
        return role

    def pass_roles(self) -> iam.PolicyStatement:
        """iam:PassRole of the execution roles, to SageMaker only."""
        return iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[r.role_arn for r in self.roles],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
