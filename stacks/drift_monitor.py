"""Scheduled drift check of the endpoint's captured traffic, its alarm, and optional retraining.

EventBridge Scheduler -> the ``drift`` Lambda (``lambda/drift/``) -> CreateProcessingJob:
``training_src/drift.py`` in the XGBoost container, from the same sourcedir.tar.gz as the pipeline's
jobs, reads the data-capture prefix and the champion model (its ``feature_spec.json`` and
``drift_baseline.json``), writes ``drift_result.json`` under ``monitoring/drift/<execution id>/``
and publishes ``DriftedFeatures`` (number of drifted columns) to ``<project>/Drift``. An alarm on
that metric notifies the topic; with ``predmaint.drift.retrain_on_drift`` an EventBridge rule on the
alarm's state change to ALARM starts the training state machine with the same input the scheduled
retraining sends (``AppConfig.retrain_input``).

Why a Lambda between the schedule and the job (a universal target could call CreateProcessingJob
directly): the request has two things only run time knows. The champion changes with every promotion,
and a universal target's input is fixed when the stack deploys (reading the SSM parameter at deploy
time also made this stack undeployable before the first run); and the capture prefix is empty until
the endpoint has served a request, when SageMaker would fail the job. The function reads the
champion's parameter and lists the prefix at run time, and starts the job only when there is something
to check; otherwise its answer says why not. Everything else of the request is built here, at synth
time, as the scheduler's input to the function (``processing_request``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.assets import stage_training_source
from stacks.config import AppConfig
from stacks.functions import PipelineFunction
from stacks.images import ecr_repository_arn, xgboost_image_uri
from stacks.roles import ECR_PULL, LOG_WRITE, MODELS_PREFIX, S3_READ, S3_WRITE, arn, list_bucket, use_key
from stacks.state_machine import CODE_DIR, PROCESSING_RUNNER

if TYPE_CHECKING:
    from stacks.network import NetworkStack

METRIC = "DriftedFeatures"
RESULTS_PREFIX = "monitoring/drift/"
#: EventBridge Scheduler replaces this in the target input with a per-invocation id (unique job names)
EXECUTION_ID = "<aws.scheduler.execution-id>"
#: the model input's S3Uri in the synthesized request: the drift Lambda puts the champion's there at run time
CHAMPION_AT_RUN_TIME = "s3://champion-resolved-at-run-time/model.tar.gz"


def drift_namespace(config: AppConfig) -> str:
    return f"{config.project}/Drift"


def processing_request(config: AppConfig, *, role_arn: str, source_uri: str, capture_uri: str,
                       results_uri: str, key_arn: str, model_uri: str = CHAMPION_AT_RUN_TIME) -> dict:
    """The CreateProcessingJob request (API shape) the drift Lambda sends, the champion's model URL
    left to it (``model_uri``)."""
    d = config.drift
    args = ["drift.py", "--window-hours", str(d.window_hours), "--psi-threshold", str(d.psi_threshold),
            "--alpha", str(d.alpha), "--metric-namespace", drift_namespace(config),
            "--metric-dimension", f"EndpointName={config.endpoint.name}"]

    def s3_input(name: str, uri: str) -> dict:
        return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": f"/opt/ml/processing/input/{name}",
                                               "S3DataType": "S3Prefix", "S3InputMode": "File",
                                               "S3DataDistributionType": "FullyReplicated"}}

    code = s3_input("code", source_uri)
    code["S3Input"]["LocalPath"] = CODE_DIR
    return {
        "ProcessingJobName": f"{config.job_prefix}-drift-{EXECUTION_ID}",
        "RoleArn": role_arn,
        "AppSpecification": {"ImageUri": xgboost_image_uri(config.region),
                             "ContainerEntrypoint": ["/bin/sh", "-c", PROCESSING_RUNNER, "predmaint-runner"],
                             "ContainerArguments": args},
        "ProcessingInputs": [code, s3_input("model", model_uri), s3_input("capture", capture_uri)],
        "ProcessingOutputConfig": {"KmsKeyId": key_arn, "Outputs": [{"OutputName": "result", "S3Output": {
            "S3Uri": results_uri, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": d.instance_type,
                                                  "VolumeSizeInGB": 30, "VolumeKmsKeyId": key_arn}},
        "StoppingCondition": {"MaxRuntimeInSeconds": d.max_runtime_minutes * 60},
    }


class DriftMonitor(Construct):
    """Schedule -> drift processing job -> metric -> alarm (-> retraining when enabled)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, artifacts: s3.IBucket,
                 key: kms.IKey, topic: sns.ITopic, state_machine: sfn.IStateMachine,
                 network: NetworkStack | None = None) -> None:
        super().__init__(scope, construct_id)
        c, d = config, config.drift
        source = s3_assets.Asset(self, "TrainingSource", path=str(stage_training_source()))
        capture_prefix = f"data-capture/{c.endpoint.name}/"
        image = xgboost_image_uri(c.region)
        self.job_role = processing_job_role(
            self, description="SageMaker processing job of the scheduled drift check", source=source, key=key,
            image=image, namespace=drift_namespace(c), data=[  # the result metric: drift.py put_metric
                list_bucket(artifacts, [capture_prefix, MODELS_PREFIX]),
                iam.PolicyStatement(actions=S3_READ, resources=[artifacts.arn_for_objects(capture_prefix + "*"),
                                                                artifacts.arn_for_objects(MODELS_PREFIX + "*")]),
                iam.PolicyStatement(actions=S3_WRITE, resources=[artifacts.arn_for_objects(RESULTS_PREFIX + "*")])])

        request = processing_request(
            c, role_arn=self.job_role.role_arn, source_uri=source.s3_object_url,
            capture_uri=artifacts.s3_url_for_object(capture_prefix),
            results_uri=artifacts.s3_url_for_object(f"{RESULTS_PREFIX}{EXECUTION_ID}"), key_arn=key.key_arn)
        self.starter = PipelineFunction(
            self, "Starter", name="drift", config=c, key=key, timeout=cdk.Duration.minutes(1),
            description="start the drift check against the current champion, if there is traffic to check",
            environment={"CHAMPION_PARAMETER": c.champion_parameter}, network=network)
        self.starter.grant(["ssm:GetParameter"], [arn(self, "ssm", f"parameter{c.champion_parameter}")])
        self.starter.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[artifacts.bucket_arn],
            conditions={"StringEquals": {"s3:prefix": [capture_prefix]}}))
        self.starter.grant(["sagemaker:CreateProcessingJob"],
                           [arn(self, "sagemaker", f"processing-job/{c.job_prefix}-drift-*")])
        self.starter.grant(["iam:PassRole"], [self.job_role.role_arn],
                           conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})

        self.scheduler_role, self.schedule = schedule_starter(
            self, starter=self.starter, request=request, expression=d.schedule, check="drift check",
            description="drift check of the endpoint's captured traffic")

        self.metric = cloudwatch.Metric(namespace=drift_namespace(c), metric_name=METRIC, statistic="Maximum",
                                        period=cdk.Duration.hours(1),
                                        dimensions_map={"EndpointName": c.endpoint.name})
        self.alarm = cloudwatch.Alarm(
            self, "Alarm", alarm_name=f"{c.endpoint.name}-input-drift", metric=self.metric, threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="captured requests drifted from the champion's training baseline "
                              f"(s3://.../{RESULTS_PREFIX}<execution>/drift_result.json names the features)")
        self.alarm.add_alarm_action(cw_actions.SnsAction(topic))
        self.retrain = None
        if d.retrain_on_drift:
            self.retrain = retrain_on_alarm(self, "RetrainOnDrift", config=c, alarms=[self.alarm],
                                            state_machine=state_machine,
                                            description="retrain when the drift alarm goes to ALARM")


def processing_job_role(scope: Construct, *, description: str, data: list[iam.PolicyStatement],
                        source: s3_assets.Asset, key: kms.IKey, image: str, namespace: str) -> iam.Role:
    """A scheduled check's SageMaker processing role (``JobRole`` under ``scope``): ``data``, its statements
    on the artifacts bucket, then what every such job needs: its code (the source asset, listed then
    read), the project key (objects, output, volume), the container image, its logs, and metrics in
    SageMaker's namespaces and the check's ``namespace``."""
    role = iam.Role(scope, "JobRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                    description=description)
    for st in [
        *data,
        iam.PolicyStatement(actions=["s3:GetObject"], resources=[source.bucket.arn_for_objects(source.s3_object_key)]),
        iam.PolicyStatement(actions=["s3:ListBucket"], resources=[source.bucket.bucket_arn],
                            conditions={"StringEquals": {"s3:prefix": [source.s3_object_key]}}),
        use_key(key, ("kms:CreateGrant", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")),
        iam.PolicyStatement(actions=ECR_PULL, resources=[ecr_repository_arn(image)]),
        iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        iam.PolicyStatement(actions=LOG_WRITE, resources=[arn(scope, "logs", "log-group:/aws/sagemaker/ProcessingJobs:*")]),
        # SageMaker's own job metrics, and the check's
        iam.PolicyStatement(actions=["cloudwatch:PutMetricData"], resources=["*"], conditions={"StringLike": {
            "cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*", namespace]}}),
    ]:
        role.add_to_policy(st)
    return role


def schedule_starter(scope: Construct, *, starter: PipelineFunction, request: dict, expression: str, check: str,
                     description: str) -> tuple[iam.Role, scheduler.CfnSchedule]:
    """EventBridge Scheduler invoking a check's ``starter`` function with ``{"request": request}`` on
    ``expression`` (``SchedulerRole`` and ``Schedule`` under ``scope``): the role may invoke that function only."""
    role = iam.Role(scope, "SchedulerRole", assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
                    description=f"EventBridge Scheduler: invoke the {check}'s starter")
    role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[starter.function.function_arn]))
    schedule = scheduler.CfnSchedule(
        scope, "Schedule", description=description, schedule_expression=expression, state="ENABLED",
        flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
        target=scheduler.CfnSchedule.TargetProperty(
            arn=starter.function.function_arn, role_arn=role.role_arn,
            input=cdk.Stack.of(scope).to_json_string({"request": request}),
            retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=2,
                                                                   maximum_event_age_in_seconds=3600)))
    return role, schedule


def retrain_on_alarm(scope: Construct, construct_id: str, *, config: AppConfig, alarms: list[cloudwatch.IAlarm],
                     state_machine: sfn.IStateMachine, description: str) -> events.Rule:
    """The optional retraining rule: any of ``alarms`` going to ALARM starts the training state machine
    with the input the scheduled retraining sends (``AppConfig.retrain_input``). The drift check and the
    quality check (stacks/quality_monitor.py) both use it."""
    return events.Rule(
        scope, construct_id, description=description,
        event_pattern=events.EventPattern(source=["aws.cloudwatch"], detail_type=["CloudWatch Alarm State Change"],
                                          resources=[a.alarm_arn for a in alarms],
                                          detail={"state": {"value": ["ALARM"]}}),
        targets=[targets.SfnStateMachine(state_machine, input=events.RuleTargetInput.from_object(config.retrain_input))])
