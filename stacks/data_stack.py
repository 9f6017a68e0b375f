"""Data stack: the customer-managed KMS key and the project's buckets."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks.config import AppConfig

# Explicit actions instead of kms:* (no IAM statement in this app has a wildcard action). The
# account root keeps every administrative and cryptographic action, so IAM policies can delegate
# them and the key can never become unmanageable.
KEY_ADMIN_ACTIONS = sorted([
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:Decrypt", "kms:DeleteAlias",
    "kms:DescribeKey", "kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation",
    "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus", "kms:ListAliases", "kms:ListGrants", "kms:ListKeyPolicies",
    "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:RetireGrant",
    "kms:RevokeGrant", "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion", "kms:TagResource",
    "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
])


def key_description(config: AppConfig) -> str:
    return f"{config.project}: data, artifacts, logs, notifications"


class ProjectKey(Construct):
    """Customer-managed key with rotation, usable by CloudWatch Logs and CloudWatch alarms (SNS)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        policy = iam.PolicyDocument(statements=[
            iam.PolicyStatement(
                sid="AccountAdministersAndDelegatesTheKey", principals=[iam.AccountRootPrincipal()],
                actions=KEY_ADMIN_ACTIONS, resources=["*"]),
            iam.PolicyStatement(
                sid="CloudWatchLogsEncryptsProjectLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey",
                         "kms:ReEncryptFrom", "kms:ReEncryptTo"],
                resources=["*"],
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                        f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:*"}}),
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToTheEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
        ])
        if config.stream.enabled and config.decisions.notify:
            # the decisions bus's rule publishes risk events to the encrypted topic (stacks/streaming.py)
            policy.add_statements(iam.PolicyStatement(
                sid="EventBridgePublishesRiskEventsToTheEncryptedTopic",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}}))
        self.cfn_key = kms.CfnKey(
            self, "Key", description=key_description(config),
            enable_key_rotation=True, key_policy=policy, pending_window_in_days=30)
        self.cfn_key.apply_removal_policy(cdk.RemovalPolicy.RETAIN if config.data.retain_data
                                          else cdk.RemovalPolicy.DESTROY)
        kms.CfnAlias(self, "Alias", alias_name=f"alias/{config.project}", target_key_id=self.cfn_key.ref)
        # an imported reference: CDK never edits the hand-written key policy
        self.key = kms.Key.from_key_arn(self, "KeyRef", self.cfn_key.attr_arn)


class ProjectBuckets(Construct):
    """Data (raw/, processed/), artifacts (runs/, models/, data-capture/) and the access-log bucket."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        d = config.data
        removal = cdk.RemovalPolicy.RETAIN if d.retain_data else cdk.RemovalPolicy.DESTROY
        common = dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, removal_policy=removal,
        )
        # S3 server access logs cannot be delivered to an SSE-KMS bucket: SSE-S3 here.
        account = cdk.Stack.of(self).account
        self.access_logs = s3.Bucket(
            self, "AccessLogs", bucket_name=config.bucket_name("logs", account), encryption=s3.BucketEncryption.S3_MANAGED, versioned=True,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=cdk.Duration.days(d.access_log_expiry_days),
                                              noncurrent_version_expiration=cdk.Duration.days(30))],
            **common)
        kms_common = dict(encryption=s3.BucketEncryption.KMS, encryption_key=key, bucket_key_enabled=True,
                          versioned=True, server_access_logs_bucket=self.access_logs, **common)
        self.data = s3.Bucket(
            self, "Data", bucket_name=config.bucket_name("data", account), server_access_logs_prefix="data/",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-old-versions",
                                 noncurrent_version_expiration=cdk.Duration.days(d.noncurrent_version_expiry_days)),
                s3.LifecycleRule(id="expire-processed", prefix="processed/",
                                 expiration=cdk.Duration.days(d.artifact_expiry_days)),
                s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=cdk.Duration.days(7)),
            ],
            **kms_common)
        # EventBridge notifications without the BucketNotifications custom-resource Lambda.
        cfn_data: s3.CfnBucket = self.data.node.default_child  # type: ignore[assignment]
        cfn_data.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True))
        self.artifacts = s3.Bucket(
            self, "Artifacts", bucket_name=config.bucket_name("artifacts", account),
            server_access_logs_prefix="artifacts/",
            # runs/ (manifests, features, tuning output, every refit model) expires; a model that passed the
            # gate is copied to models/<run-id>/ by the promote Lambda and never expires, because the
            # endpoint's scale-out and redeploys read the champion's model.tar.gz from there
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-old-runs", prefix="runs/", expiration=cdk.Duration.days(d.artifact_expiry_days)),
                s3.LifecycleRule(id="expire-data-capture", prefix="data-capture/",
                                 expiration=cdk.Duration.days(d.data_capture_expiry_days)),
                s3.LifecycleRule(id="expire-old-versions",
                                 noncurrent_version_expiration=cdk.Duration.days(d.noncurrent_version_expiry_days)),
                s3.LifecycleRule(id="abort-uploads", abort_incomplete_multipart_upload_after=cdk.Duration.days(7)),
            ],
            **kms_common)


def retained_storage_parameter(config: AppConfig) -> str:
    """Name of the marker the data stack leaves behind with its retained key and buckets."""
    return f"/{config.project}/retained-storage"


class RetainedStorageMarker(Construct):
    """With ``retain_data`` (the default), ``cdk destroy`` keeps the key and the three buckets, whose
    names are fixed; deploying the data stack again would then fail half-way on the first bucket
    ("already exists") and leave one more orphaned key. This fixed-name SSM parameter is retained
    with them and is the stack's first resource (everything else depends on it), so that deploy
    fails at once, before anything is created, on ``/<project>/retained-storage already exists``;
    its value names what is kept and docs/aws.md says what to do."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig) -> None:
        super().__init__(scope, construct_id)
        account = cdk.Stack.of(self).account
        # (not the key's ARN: the key is created after this parameter)
        value = cdk.Stack.of(self).to_json_string({
            "key": f"the KMS key described {key_description(config)!r}", "buckets": [config.bucket_name(kind, account) for kind in ("data", "artifacts", "logs")],
            "redeploy": "delete these (docs/aws.md, Tear down) or deploy under another predmaint.project"})
        self.parameter = ssm.CfnParameter(
            self, "Parameter", name=retained_storage_parameter(config), type="String", value=value,
            description="retained by cdk destroy with the project's key and buckets: see docs/aws.md")
        self.parameter.apply_removal_policy(cdk.RemovalPolicy.RETAIN)


class DataStack(cdk.Stack):
    """Encrypted, versioned storage for raw data, processed data, model artifacts and data capture."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, description=f"{config.project}: KMS key and S3 buckets", **kwargs)
        self.encryption = ProjectKey(self, "Encryption", config=config)
        self.key = self.encryption.key
        self.buckets = ProjectBuckets(self, "Buckets", config=config, key=self.key)
        self.marker = None
        if config.data.retain_data:
            self.marker = RetainedStorageMarker(self, "RetainedStorage", config=config)
            # created first, so a redeploy over retained storage stops before creating anything
            for child in (self.encryption.cfn_key, self.buckets):
                child.node.add_dependency(self.marker.parameter)
        cdk.CfnOutput(self, "DataBucketName", value=self.buckets.data.bucket_name,
                      description="Upload raw data to s3://<this>/raw/<dataset>/")
        cdk.CfnOutput(self, "ArtifactsBucketName", value=self.buckets.artifacts.bucket_name)
        cdk.CfnOutput(self, "KeyArn", value=self.key.key_arn)
