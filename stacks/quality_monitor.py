"""Scheduled live quality of the stream's answers, its alarms, and optional retraining (docs/decisions.md).

EventBridge Scheduler -> the ``quality`` Lambda (``lambda/quality/``) -> CreateProcessingJob:
``training_src/stream/quality_job.py`` in the XGBoost container, from the same sourcedir.tar.gz as the
pipeline's jobs, reads the stream archive's ``answers/``, ``outcomes/`` and ``risk/`` prefixes
(training_src/stream/archive.py), writes ``quality_report.json`` under
``monitoring/quality/<execution id>/`` (and the files its ``outputs`` adds under ``fleet/``), and
publishes the figures to ``<project>/Quality``: per model version and, for the alarms, for the latest
version (dimension ``EndpointName`` only). Alarms on the latest version's 80 % interval coverage
leaving [``coverage_min``, ``coverage_max``] and its capped RMSE above ``max_rmse`` notify the topic;
with ``predmaint.quality.retrain_on_alarm`` they start the training state machine through the same
rule as drift (``drift_monitor.retrain_on_alarm``).

How the figures reach CloudWatch: the job publishes them itself (``PutMetricData``), as the drift
check does, rather than a Lambda reading the report afterwards (one more function, and a second reader
of the report's format). The job runs without network isolation (it needs CloudWatch); in VPC mode it
runs in the project's isolated subnets, where the S3 gateway endpoint serves its inputs and outputs
and the ``monitoring`` interface endpoint (stacks/network.py) its metrics, so nothing leaves the VPC.
Why a Lambda between the schedule and the job: the archive's ``outcomes/`` and ``risk/`` prefixes are
empty until a failure is recorded or an asset enters risk, and SageMaker fails a job whose S3 input is
empty; the function lists them at run time and leaves the empty ones out.

With ``predmaint.quality.fleet_training_data`` the job also reads the archive's ``readings/`` prefix and
writes every failed life's history (training_src/stream/failures.py) through one more output,
``fleet-data``, to the data bucket's ``raw/<dataset>/<train folder>/`` (``fleet-<asset>-<life>.txt``):
the job role may put only ``fleet-*`` objects there. Those keys are not the ``_READY`` marker, so
writing them starts no training run; the next run (scheduled, by marker or by alarm) reads them.
Why one input of the whole ``readings/`` prefix rather than the failed assets' ``readings/asset=<id>/``
prefixes: a processing job takes at most 10 inputs (a fleet has more failed assets than that; a
manifest would have the starter list and write every object key), and the job already reads every
archived answer, about one per reading, so the readings input at most doubles what it downloads. The
starter leaves it out when no failure is recorded (``outcomes/`` empty), when there is nothing to export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.assets import stage_training_source
from stacks.config import STREAM_ARCHIVE_PREFIX, AppConfig
from stacks.drift_monitor import EXECUTION_ID, processing_job_role, retrain_on_alarm, schedule_starter
from stacks.functions import PipelineFunction
from stacks.images import xgboost_image_uri
from stacks.roles import S3_READ, S3_WRITE, arn, list_bucket
from stacks.state_machine import CODE_DIR, PROCESSING_RUNNER
from training_src.stream import failures

if TYPE_CHECKING:
    from stacks.network import NetworkStack

RESULTS_PREFIX = "monitoring/quality/"
#: where the quality job's fleet page goes in the artifacts bucket (``predmaint fleet --aws`` reads it)
FLEET_PREFIX = "fleet/"
FLEET_PAGE_KEY = FLEET_PREFIX + "index.html"
#: the archive's partitions the job reads (training_src/stream/archive.py)
ARCHIVE_INPUTS = ("answers", "outcomes", "risk")
OUTPUT_DIR = "/opt/ml/processing/output"
#: the archive's partition the job reads failed assets' histories from (``fleet_training_data`` only)
READINGS_INPUT = "readings"
FLEET_DATA_OUTPUT = "fleet-data"


def fleet_data_prefix(config: AppConfig) -> str:
    """Where the quality job writes the fleet's histories in the data bucket: the dataset's folder of the
    profile's train file partitioned into parts (``raw/cmapss/train_FD001/``), as the prepare Lambda
    resolves a role (``resolve_objects``)."""
    from training_src.profiles import load_profile

    folder = failures.parts_folder(load_profile(config.profile, config.subset))
    return f"raw/{config.dataset}/{folder.split('/', 1)[-1]}/"


def quality_namespace(config: AppConfig) -> str:
    return f"{config.project}/Quality"


def processing_request(config: AppConfig, *, role_arn: str, source_uri: str, archive_uri: str, results_uri: str,
                       fleet_uri: str, key_arn: str, vpc_config: dict[str, Any] | None = None,
                       fleet_data_uri: str | None = None) -> dict:
    """The CreateProcessingJob request (API shape) the quality Lambda sends (``archive_uri``: the archive's
    root, ending in ``/``; ``fleet_data_uri``: where the failed lives' histories go, None: not written)."""
    from training_src.profiles import load_profile

    q, rule = config.quality, config.decision_rule()
    cap = load_profile(config.profile, config.subset).label.cap
    args = ["stream/quality_job.py", "--output", f"{OUTPUT_DIR}/report", "--fleet-output", f"{OUTPUT_DIR}/fleet",
            "--lead", str(rule.min_lead or 0.0), "--metric-namespace", quality_namespace(config),
            "--endpoint-name", config.endpoint.name, "--region", config.region]
    if rule.horizon is not None:
        args += ["--horizon", str(rule.horizon)]
    if cap is not None:
        args += ["--cap", str(cap)]
    inputs = list(ARCHIVE_INPUTS)
    if fleet_data_uri is not None:
        inputs.append(READINGS_INPUT)
        args += ["--readings", f"/opt/ml/processing/input/{READINGS_INPUT}",
                 "--fleet-data-output", f"{OUTPUT_DIR}/{FLEET_DATA_OUTPUT}", "--profile", config.profile]
        if config.subset:
            args += ["--subset", config.subset]

    def s3_input(name: str, uri: str, local: str) -> dict:
        return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": "S3Prefix",
                                               "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}

    def s3_output(name: str, uri: str) -> dict:
        return {"OutputName": name, "S3Output": {"S3Uri": uri, "LocalPath": f"{OUTPUT_DIR}/{name}",
                                                 "S3UploadMode": "EndOfJob"}}

    return {
        "ProcessingJobName": f"{config.job_prefix}-quality-{EXECUTION_ID}",
        "RoleArn": role_arn,
        "AppSpecification": {"ImageUri": xgboost_image_uri(config.region),
                             "ContainerEntrypoint": ["/bin/sh", "-c", PROCESSING_RUNNER, "predmaint-runner"],
                             "ContainerArguments": args},
        "ProcessingInputs": [s3_input("code", source_uri, CODE_DIR)] + [
            s3_input(name, f"{archive_uri}{name}/", f"/opt/ml/processing/input/{name}") for name in inputs],
        "ProcessingOutputConfig": {"KmsKeyId": key_arn, "Outputs": [
            s3_output("report", results_uri), s3_output("fleet", fleet_uri),
            *([s3_output(FLEET_DATA_OUTPUT, fleet_data_uri)] if fleet_data_uri is not None else [])]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": q.instance_type,
                                                  "VolumeSizeInGB": 30, "VolumeKmsKeyId": key_arn}},
        "StoppingCondition": {"MaxRuntimeInSeconds": q.max_runtime_minutes * 60},
        "NetworkConfig": {"EnableInterContainerTrafficEncryption": True, "EnableNetworkIsolation": False,
                          **({"VpcConfig": vpc_config} if vpc_config else {})},
    }


class QualityMonitor(Construct):
    """Schedule -> quality processing job -> metrics -> alarms (-> retraining when enabled)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, artifacts: s3.IBucket,
                 key: kms.IKey, topic: sns.ITopic, state_machine: sfn.IStateMachine,
                 network: NetworkStack | None = None, data: s3.IBucket | None = None) -> None:
        super().__init__(scope, construct_id)
        c, q = config, config.quality
        source = s3_assets.Asset(self, "TrainingSource", path=str(stage_training_source()))
        image = xgboost_image_uri(c.region)
        fleet_data = q.fleet_training_data
        if fleet_data and data is None:
            raise ValueError("QualityMonitor: quality.fleet_training_data needs the data bucket")
        starter_prefixes = [f"{STREAM_ARCHIVE_PREFIX}{name}/" for name in ARCHIVE_INPUTS]
        prefixes = starter_prefixes + ([f"{STREAM_ARCHIVE_PREFIX}{READINGS_INPUT}/"] if fleet_data else [])
        writes = [artifacts.arn_for_objects(RESULTS_PREFIX + "*"), artifacts.arn_for_objects(FLEET_PREFIX + "*")]
        if fleet_data:  # only the exported histories' names: never the _READY marker nor a shipped part
            writes.append(data.arn_for_objects(f"{fleet_data_prefix(c)}{failures.PREFIX}*"))
        self.job_role = processing_job_role(
            self, description="SageMaker processing job of the scheduled quality check", source=source, key=key,
            image=image, namespace=quality_namespace(c), data=[  # the figures: quality_job.publish
                list_bucket(artifacts, prefixes),
                iam.PolicyStatement(actions=S3_READ, resources=[artifacts.arn_for_objects(p + "*") for p in prefixes]),
                iam.PolicyStatement(actions=S3_WRITE, resources=writes)])
        for st in network.eni_statements(self) if network is not None else []:
            self.job_role.add_to_policy(st)

        self.fleet_page_uri = artifacts.s3_url_for_object(FLEET_PAGE_KEY)
        archive_uri = artifacts.s3_url_for_object(STREAM_ARCHIVE_PREFIX)
        request = processing_request(
            c, role_arn=self.job_role.role_arn, source_uri=source.s3_object_url, archive_uri=archive_uri,
            results_uri=artifacts.s3_url_for_object(f"{RESULTS_PREFIX}{EXECUTION_ID}"),
            fleet_uri=artifacts.s3_url_for_object(FLEET_PREFIX.rstrip("/")), key_arn=key.key_arn,
            vpc_config=network.sagemaker_vpc_config() if network is not None else None,
            fleet_data_uri=data.s3_url_for_object(fleet_data_prefix(c).rstrip("/")) if fleet_data else None)
        self.starter = PipelineFunction(
            self, "Starter", name="quality", config=c, key=key, timeout=cdk.Duration.minutes(1),
            description="start the live-quality check of the stream's archived answers, if there are any",
            environment={}, network=network)
        self.starter.role.add_to_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[artifacts.bucket_arn],
            conditions={"StringEquals": {"s3:prefix": starter_prefixes}}))
        self.starter.grant(["sagemaker:CreateProcessingJob"],
                           [arn(self, "sagemaker", f"processing-job/{c.job_prefix}-quality-*")])
        self.starter.grant(["iam:PassRole"], [self.job_role.role_arn],
                           conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})

        self.scheduler_role, self.schedule = schedule_starter(
            self, starter=self.starter, request=request, expression=q.schedule, check="quality check",
            description="live quality of the stream's answers against recorded failures")

        def metric(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=quality_namespace(c), metric_name=name, statistic=statistic,
                                     period=cdk.Duration.hours(1), dimensions_map={"EndpointName": c.endpoint.name})

        report = f"s3://.../{RESULTS_PREFIX}<execution>/quality_report.json has every figure per model version"
        gt = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        specs = [("CoverageLow", f"{c.endpoint.name}-coverage-low", metric("Coverage80", "Minimum"), q.coverage_min,
                  cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                  f"the latest model's 80 % intervals hold fewer than {q.coverage_min:.0%} of realised RULs"),
                 ("CoverageHigh", f"{c.endpoint.name}-coverage-high", metric("Coverage80", "Maximum"), q.coverage_max,
                  gt, f"the latest model's 80 % intervals hold more than {q.coverage_max:.0%} of realised RULs")]
        if q.max_rmse is not None:
            specs.append(("RmseHigh", f"{c.endpoint.name}-rmse-high", metric("RMSECapped", "Maximum"), q.max_rmse, gt,
                          f"the latest model's RMSE against realised (capped) RUL is above {q.max_rmse:g}"))
        self.alarms: list[cloudwatch.Alarm] = []
        for cid, name, m, threshold, op, why in specs:
            alarm = cloudwatch.Alarm(self, cid, alarm_name=name, metric=m, threshold=threshold, evaluation_periods=1,
                                     comparison_operator=op, treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                                     alarm_description=f"{why} ({report})")
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
            self.alarms.append(alarm)
        self.retrain = None
        if q.retrain_on_alarm:
            self.retrain = retrain_on_alarm(self, "RetrainOnQuality", config=c, alarms=self.alarms,
                                            state_machine=state_machine,
                                            description="retrain when a live-quality alarm goes to ALARM")
