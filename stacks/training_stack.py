"""Training stack: SageMaker roles, the prepare/promote Lambdas, the state machine, its triggers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

from stacks.assets import stage_training_source
from stacks.config import AppConfig

if TYPE_CHECKING:
    from stacks.network import NetworkStack
from stacks.functions import PipelineFunction
from stacks.images import xgboost_image_uri
from stacks.roles import MODELS_PREFIX, S3_READ_VERSIONS, SageMakerRoles, arn, list_bucket, use_key
from stacks.state_machine import TrainingStateMachine


class Notifications(Construct):
    """KMS-encrypted, TLS-only SNS topic for pipeline failures, rejections and endpoint alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Topic", topic_name=f"{config.project}-notifications",
                               master_key=key, enforce_ssl=True)
        if config.notification_email:
            self.topic.add_subscription(subs.EmailSubscription(config.notification_email))


class Triggers(Construct):
    """Optional EventBridge schedule and optional raw-upload trigger (a ``_READY`` marker object)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, state_machine, data: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        run_input = events.RuleTargetInput.from_object(config.retrain_input)
        if config.triggers.schedule:
            events.Rule(self, "Schedule", schedule=events.Schedule.expression(config.triggers.schedule),
                        description="periodic retraining",
                        targets=[targets.SfnStateMachine(state_machine, input=run_input)])
        if config.triggers.on_raw_upload:
            # one marker per upload, not one execution per uploaded part
            events.Rule(self, "RawUploaded", description="retrain when raw/<dataset>/<marker> is uploaded",
                        event_pattern=events.EventPattern(
                            source=["aws.s3"], detail_type=["Object Created"],
                            detail={"bucket": {"name": [data.bucket_name]},
                                    "object": {"key": [f"raw/{config.dataset}/{config.triggers.ready_marker}"]}}),
                        targets=[targets.SfnStateMachine(state_machine, input=run_input)])


def project_storage(scope: Construct, config: AppConfig, key_arn: str) -> tuple[kms.IKey, s3.IBucket, s3.IBucket]:
    """The data stack's key and buckets, referenced by their deterministic names."""
    account = cdk.Stack.of(scope).account
    key = kms.Key.from_key_arn(scope, "ProjectKey", key_arn)
    data = s3.Bucket.from_bucket_attributes(scope, "DataBucket", bucket_name=config.bucket_name("data", account),
                                            encryption_key=key)
    artifacts = s3.Bucket.from_bucket_attributes(scope, "ArtifactsBucket", encryption_key=key,
                                                 bucket_name=config.bucket_name("artifacts", account))
    return key, data, artifacts


class TrainingStack(cdk.Stack):
    """Everything a training run needs; ``cdk deploy`` this (after the data stack) before the endpoint."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, key_arn: str,
                 network: NetworkStack | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, description=f"{config.project}: training pipeline", **kwargs)
        c = config
        key, data_bucket, artifacts_bucket = project_storage(self, config, key_arn)
        self.image_uri = xgboost_image_uri(c.region)
        source = s3_assets.Asset(self, "TrainingSource", path=str(stage_training_source()))
        self.roles = SageMakerRoles(self, "SageMakerRoles", config=c, data=data_bucket, artifacts=artifacts_bucket,
                                    key=key, image_uri=self.image_uri, source=source, network=network)
        self.notifications = Notifications(self, "Notifications", config=c, key=key)

        self.prepare = PipelineFunction(
            self, "Prepare", name="prepare", config=c, key=key, timeout=cdk.Duration.minutes(10), memory_mb=1024,
            description="validate raw data against the profile and plan a training run", network=network,
            environment={"DATA_BUCKET": data_bucket.bucket_name, "ARTIFACTS_BUCKET": artifacts_bucket.bucket_name,
                         "JOB_PREFIX": c.job_prefix, "SOURCE_URI": source.s3_object_url,
                         "MAX_OBJECT_BYTES": str(c.pipeline.max_raw_object_mb * 2**20),
                         "SAMPLE_BYTES": str(c.pipeline.validation_sample_kb * 1024),
                         # the plan gives each training host its own train part (see preprocess.py --train-parts)
                         "PROCESSING_INSTANCES": str(c.processing.instance_count),
                         "TRAINING_INSTANCES": str(c.training.instance_count)})
        self.prepare.role.add_to_policy(list_bucket(data_bucket, ["raw/"]))
        self.prepare.grant(S3_READ_VERSIONS, [data_bucket.arn_for_objects("raw/*")])  # reads pinned versions
        self.prepare.grant(["s3:PutObject"], [artifacts_bucket.arn_for_objects("runs/*")])
        self.prepare.role.add_to_policy(use_key(key))

        self.promote = PipelineFunction(
            self, "Promote", name="promote", config=c, key=key, timeout=cdk.Duration.minutes(2),
            description="gate the challenger and register it in the model registry", network=network,
            environment={"MODEL_PACKAGE_GROUP": c.model_package_group, "IMAGE_URI": self.image_uri,
                         "THRESHOLDS": json.dumps(c.promotion, sort_keys=True),
                         "INFERENCE_INSTANCE_TYPES": c.endpoint.instance_type,
                         "CHAMPION_PARAMETER": c.champion_parameter,
                         "CHAMPION_PACKAGE_PARAMETER": c.champion_package_parameter,
                         "MODELS_URI": artifacts_bucket.s3_url_for_object(MODELS_PREFIX)})
        group = c.model_package_group
        # the group is created by the function on first use, not by this stack (lambda/promote ensure_group)
        self.promote.grant(["sagemaker:DescribeModelPackageGroup", "sagemaker:CreateModelPackageGroup"],
                           [arn(self, "sagemaker", f"model-package-group/{group}")])
        self.promote.grant(["sagemaker:ListModelPackages"], ["*"])
        self.promote.grant(["sagemaker:CreateModelPackage"],
                           [arn(self, "sagemaker", f"model-package/{group}/*"),
                            arn(self, "sagemaker", f"model-package-group/{group}")])
        self.promote.grant(["sagemaker:DescribeModelPackage", "sagemaker:UpdateModelPackage"],
                           [arn(self, "sagemaker", f"model-package/{group}/*")])
        # reads a challenger's report in runs/ and the champion's kept under models/
        self.promote.grant(["s3:GetObject"], [artifacts_bucket.arn_for_objects("runs/*"),
                                              artifacts_bucket.arn_for_objects(f"{MODELS_PREFIX}*")])
        # keeps a model that passed the gate, and its report: runs/<id>/... -> models/<id>/model.tar.gz,
        # evaluation.json (boto3's managed copy: CopyObject, or multipart UploadPartCopy for a large model)
        self.promote.grant(["s3:PutObject", "s3:AbortMultipartUpload"],
                           [artifacts_bucket.arn_for_objects(f"{MODELS_PREFIX}*")])
        self.promote.grant(["ssm:PutParameter"], [arn(self, "ssm", f"parameter{p}") for p in
                                                  (c.champion_parameter, c.champion_package_parameter)])
        self.promote.grant(["kms:Decrypt", "kms:GenerateDataKey"], [key.key_arn])  # reads and writes SSE-KMS objects

        self.pipeline = TrainingStateMachine(
            self, "Pipeline", config=c, key=key, data=data_bucket, artifacts=artifacts_bucket, roles=self.roles,
            image_uri=self.image_uri, source_uri=source.s3_object_url, prepare=self.prepare,
            promote=self.promote, topic=self.notifications.topic,
            vpc_config=network.sagemaker_vpc_config() if network else None)
        self.state_machine = self.pipeline.state_machine
        Triggers(self, "Triggers", config=c, state_machine=self.state_machine, data=data_bucket)

        cdk.CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn,
                      description="predmaint start-training --state-machine <this>")
        cdk.CfnOutput(self, "ImageUri", value=self.image_uri)
        cdk.CfnOutput(self, "NotificationsTopicArn", value=self.notifications.topic.topic_arn)

    @property
    def hosting_role(self) -> iam.IRole:
        return self.roles.hosting
