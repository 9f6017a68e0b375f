"""cdk-nag AwsSolutions acknowledgments: each one names one rule and one finding, on the one
construct it applies to, with its reason. Anything not listed here fails synthesis.

The finding IDs are built from the config (region, names, prefixes) and from logical IDs, so
they stay exact when the deployment is reconfigured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from constructs import IConstruct

if TYPE_CHECKING:
    from stacks.config import AppConfig
    from stacks.monitoring_stack import MonitoringStack
    from stacks.streaming import StreamScoring
    from stacks.training_stack import TrainingStack

IAM5 = "AwsSolutions::AwsSolutions-IAM5[Resource::{}]"
LAMBDA_RUNTIME_REASON = ("pinned to python3.13 (supported, Amazon Linux 2023): the runtime its bundled "
                         "dependencies are built for (make lambda-deps)")


def ack(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one finding on ``scope`` (and only there)."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=finding, reason=reason))


def acknowledged_findings(config: AppConfig, training: TrainingStack) -> list[tuple[IConstruct, str, str]]:
    """(scope, finding id, reason) for every finding that is by design."""
    c = config
    t = training
    region, p = c.region, c.job_prefix
    acct, part = "<AWS::AccountId>", "<AWS::Partition>"
    bucket = lambda kind, prefix: f"arn:{part}:s3:::{c.bucket_name(kind, acct)}/{prefix}*"  # noqa: E731
    sm = lambda resource: f"arn:{part}:sagemaker:{region}:{acct}:{resource}"  # noqa: E731
    sm_logs = lambda kind: f"arn:{part}:logs:{region}:{acct}:log-group:/aws/sagemaker/{kind}:*"  # noqa: E731
    run_named = "names are <job prefix>-<step>-<run id> and the run id is only known at execution time"
    per_run = "object keys contain the run id, unknown at synth time; scoped to the project's bucket and prefix"
    jobs, hosting = t.roles.jobs, t.roles.hosting
    # VPC mode: ENI permissions (only in VPC mode, so the default acknowledgments are unchanged)
    vpc = c.vpc.enabled
    sm_eni = ("; VPC mode: ec2:Describe{DhcpOptions,NetworkInterfaces,SecurityGroups,Subnets,Vpcs} have no "
              "resource-level permissions") if vpc else ""
    fn_eni = ("; VPC mode: Lambda's ENI actions (Create/Delete/DescribeNetworkInterface(s), Assign/Unassign"
              "PrivateIpAddresses, DescribeSubnets) must be on * because Lambda validates the role with an "
              "unscoped dry run at function creation") if vpc else ""
    eni_arn = f"arn:{part}:ec2:{region}:{acct}:network-interface/*"
    eni_reason = ("VPC mode: SageMaker creates one ENI per job instance/endpoint instance with an ID unknown at "
                  "synth time; creation is further limited to the project's subnets and security group")
    out: list[tuple[IConstruct, str, str]] = [
        # --- SageMaker jobs role ---
        (jobs, IAM5.format(bucket("data", "raw/")), "reads the raw objects of any dataset under raw/: " + per_run),
        (jobs, IAM5.format(bucket("data", "processed/")), "reads/writes processed/<run-id>/: " + per_run),
        (jobs, IAM5.format(bucket("artifacts", "runs/")), "reads/writes runs/<run-id>/ (manifests, models, "
                                                          "evaluation, checkpoints): " + per_run),
        (jobs, IAM5.format("*"), "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level "
                                 "permissions (PutMetricData is limited to SageMaker namespaces by condition)" + sm_eni),
        (jobs, IAM5.format(sm_logs("ProcessingJobs")), "log streams are named after each processing job and host"),
        (jobs, IAM5.format(sm_logs("TrainingJobs")), "log streams are named after each training job"),
        # --- SageMaker hosting role ---
        (hosting, IAM5.format(bucket("artifacts", "models/")), "serves the champion's models/<run-id>/model.tar.gz; "
                                                               "the champion changes with every promotion"),
        (hosting, IAM5.format(bucket("artifacts", f"data-capture/{c.endpoint.name}/")),
         "data capture writes one object per capture interval under the endpoint's prefix"),
        (hosting, IAM5.format("*"), "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level "
                                    "permissions (PutMetricData is limited to SageMaker namespaces by condition)"
                                    + sm_eni),
        (hosting, IAM5.format(sm_logs(f"Endpoints/{c.endpoint.name}")), "log streams are named per variant/instance"),
        # --- prepare Lambda ---
        (t.prepare.role, IAM5.format(bucket("data", "raw/")), "validates the raw objects of the requested dataset: "
                                                              + per_run),
        (t.prepare.role, IAM5.format(bucket("artifacts", "runs/")), "writes runs/<run-id>/ manifests and lineage: "
                                                                    + per_run),
        (t.prepare.role, IAM5.format("*"), "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no "
                                           "resource-level permissions" + fn_eni),
        # --- promote Lambda ---
        (t.promote.role, IAM5.format(bucket("artifacts", "runs/")), "reads runs/<run-id>/evaluation/evaluation.json of "
                                                                    "the challenger and the champion"),
        (t.promote.role, IAM5.format(bucket("artifacts", "models/")), "keeps a model that passed the gate as "
                                                                      "models/<run-id>/model.tar.gz: " + per_run),
        (t.promote.role, IAM5.format(sm(f"model-package/{c.model_package_group}/*")),
         "model package versions of the project's group are numbered by SageMaker at registration"),
        (t.promote.role, IAM5.format("*"), "sagemaker:ListModelPackages and X-Ray tracing have no resource-level "
                                           "permissions" + fn_eni),
        # --- state machine ---
        (t.pipeline.role, IAM5.format("*"), "CloudWatch Logs delivery (logs:CreateLogDelivery etc.) and X-Ray tracing "
                                            "have no resource-level permissions"),
        (t.pipeline.role, IAM5.format(sm(f"processing-job/{p}-*")), "processing job " + run_named),
        (t.pipeline.role, IAM5.format(sm(f"hyper-parameter-tuning-job/{p}-*")), "tuning job " + run_named),
        (t.pipeline.role, IAM5.format(sm(f"training-job/{p}-*")), "refit and tuning-trial training job " + run_named),
        (t.pipeline.role, IAM5.format(sm(f"model/{p}-*")), "model " + run_named),
        (t.pipeline.role, IAM5.format(sm(f"endpoint-config/{p}-*")), "endpoint config " + run_named),
    ]
    rebuild = t.roles.stream_rebuild
    if rebuild is not None:  # predmaint.stream.enabled: the stream's rebuild job (stacks/roles.py)
        out += [
            (rebuild, IAM5.format(bucket("artifacts", "models/")), "reads the new champion's "
                                                                  "models/<run-id>/model.tar.gz: " + per_run),
            (rebuild, IAM5.format(bucket("artifacts", "stream/archive/readings/")),
             "reads every asset's archived readings: one partition per asset and day, asset ids unknown at synth time"),
            (rebuild, IAM5.format(bucket("artifacts", "stream/model-info/")),
             "the processing output writes the model info under its prefix (SageMaker names the uploaded objects)"),
            (rebuild, IAM5.format("*"), "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no "
                                        "resource-level permissions (PutMetricData is limited to SageMaker "
                                        "namespaces by condition)" + sm_eni),
            (rebuild, IAM5.format(sm_logs("ProcessingJobs")), "log streams are named after each processing job and host"),
        ]
        if vpc:
            out.append((rebuild, IAM5.format(eni_arn), eni_reason))
    if vpc:
        out += [(jobs, IAM5.format(eni_arn), eni_reason), (hosting, IAM5.format(eni_arn), eni_reason)]
    for fn in (t.prepare, t.promote):
        logical = cdk.Stack.of(fn).get_logical_id(fn.function.node.default_child)
        out.append((t.pipeline.role, IAM5.format(f"<{logical}.Arn>:*"),
                    "LambdaInvoke grants the function and its versions/aliases (CDK default)"))
        out.append((fn.function, "AwsSolutions::AwsSolutions-L1", LAMBDA_RUNTIME_REASON))
    return out


def drift_findings(config: AppConfig, monitoring: MonitoringStack) -> list[tuple[IConstruct, str, str]]:
    """(scope, finding id, reason) of the scheduled drift check's roles (stacks/drift_monitor.py)."""
    d = monitoring.drift
    if d is None:
        return []
    c, acct, part = config, "<AWS::AccountId>", "<AWS::Partition>"
    bucket = lambda prefix: f"arn:{part}:s3:::{c.bucket_name('artifacts', acct)}/{prefix}*"  # noqa: E731
    return [
        (d.job_role, IAM5.format(bucket(f"data-capture/{c.endpoint.name}/")),
         "reads the capture records SageMaker writes per hour and instance under the endpoint's prefix"),
        (d.job_role, IAM5.format(bucket("models/")), "reads the champion's models/<run-id>/model.tar.gz; the "
                                                     "champion changes with every promotion"),
        (d.job_role, IAM5.format(bucket("monitoring/drift/")), "writes each check's result under "
                                                               "monitoring/drift/<schedule execution id>/"),
        (d.job_role, IAM5.format(f"arn:{part}:logs:{c.region}:{acct}:log-group:/aws/sagemaker/ProcessingJobs:*"),
         "log streams are named after each processing job and host"),
        (d.job_role, IAM5.format("*"), "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level "
                                       "permissions (PutMetricData is limited to the drift namespace by condition)"),
        (d.starter.role, IAM5.format(f"arn:{part}:sagemaker:{c.region}:{acct}:processing-job/{c.job_prefix}-drift-*"),
         "each check's job is named <job prefix>-drift-<schedule execution id>, known only at run time"),
        (d.starter.role, IAM5.format("*"), "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no "
                                           "resource-level permissions" + (
                                               "; VPC mode: Lambda's ENI actions must be on * (Lambda validates the "
                                               "role with an unscoped dry run at function creation)"
                                               if c.vpc.enabled else "")),
        (d.starter.function, "AwsSolutions::AwsSolutions-L1", LAMBDA_RUNTIME_REASON),
    ]


def quality_findings(config: AppConfig, monitoring: MonitoringStack) -> list[tuple[IConstruct, str, str]]:
    """(scope, finding id, reason) of the scheduled quality check's roles (stacks/quality_monitor.py)."""
    q = monitoring.quality
    if q is None:
        return []
    from stacks.config import STREAM_ARCHIVE_PREFIX as ARCHIVE_PREFIX
    from stacks.quality_monitor import (
        ARCHIVE_INPUTS,
        FLEET_PREFIX,
        READINGS_INPUT,
        RESULTS_PREFIX,
        fleet_data_prefix,
    )
    from training_src.stream.failures import PREFIX as HISTORY_PREFIX

    c, acct, part = config, "<AWS::AccountId>", "<AWS::Partition>"
    bucket = lambda prefix: f"arn:{part}:s3:::{c.bucket_name('artifacts', acct)}/{prefix}*"  # noqa: E731
    vpc = c.vpc.enabled
    fleet_data = c.quality.fleet_training_data
    out: list[tuple[IConstruct, str, str]] = [
        (q.job_role, IAM5.format(bucket(f"{ARCHIVE_PREFIX}{name}/")),
         f"reads the archive's {name}/ partition, whose keys hold the day and asset, unknown at synth time")
        for name in (*ARCHIVE_INPUTS, *([READINGS_INPUT] if fleet_data else []))]
    if fleet_data:
        data = f"arn:{part}:s3:::{c.bucket_name('data', acct)}/{fleet_data_prefix(c)}{HISTORY_PREFIX}*"
        out.append((q.job_role, IAM5.format(data), "writes each failed life's history as fleet-<asset>-<life>.txt "
                                                   "beside the train file's parts; assets and lives are known only "
                                                   "at run time"))
    out += [
        (q.job_role, IAM5.format(bucket(RESULTS_PREFIX)), "writes each check's report under "
                                                          "monitoring/quality/<schedule execution id>/"),
        (q.job_role, IAM5.format(bucket(FLEET_PREFIX)), "writes the fleet page and its files under fleet/"),
        (q.job_role, IAM5.format(f"arn:{part}:logs:{c.region}:{acct}:log-group:/aws/sagemaker/ProcessingJobs:*"),
         "log streams are named after each processing job and host"),
        (q.job_role, IAM5.format("*"), "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level "
                                       "permissions (PutMetricData is limited to the quality namespace by condition)"
                                       + ("; VPC mode: ec2:Describe{DhcpOptions,NetworkInterfaces,SecurityGroups,"
                                          "Subnets,Vpcs} have no resource-level permissions" if vpc else "")),
        (q.starter.role, IAM5.format(f"arn:{part}:sagemaker:{c.region}:{acct}:processing-job/{c.job_prefix}-quality-*"),
         "each check's job is named <job prefix>-quality-<schedule execution id>, known only at run time"),
        (q.starter.role, IAM5.format("*"), "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no "
                                           "resource-level permissions" + (
                                               "; VPC mode: Lambda's ENI actions must be on * (Lambda validates the "
                                               "role with an unscoped dry run at function creation)" if vpc else "")),
        (q.starter.function, "AwsSolutions::AwsSolutions-L1", LAMBDA_RUNTIME_REASON),
    ]
    if vpc:
        out.append((q.job_role, IAM5.format(f"arn:{part}:ec2:{c.region}:{acct}:network-interface/*"),
                    "VPC mode: SageMaker creates one ENI per job instance with an ID unknown at synth time; creation "
                    "is further limited to the project's subnets and security group"))
    return out


def acknowledge_findings(config: AppConfig, training: TrainingStack, monitoring: MonitoringStack | None = None) -> None:
    """Acknowledge the findings that are by design; anything else fails synthesis."""
    found = acknowledged_findings(config, training) + (
        drift_findings(config, monitoring) + quality_findings(config, monitoring) if monitoring else [])
    for scope, finding, reason in found:
        ack(scope, finding, reason)


def stream_findings(config: AppConfig, built: StreamScoring, account: str = "<AWS::AccountId>"
                    ) -> list[tuple[IConstruct, str, str]]:
    """(scope, finding id, reason) for every finding of the stream construct (stacks/streaming.py) that
    is by design; ``ack`` applies each."""
    from stacks.config import STREAM_ARCHIVE_PREFIX as ARCHIVE_PREFIX

    archive = f"arn:<AWS::Partition>:s3:::{config.bucket_name('artifacts', account)}/{ARCHIVE_PREFIX}*"
    role = built.score.role
    return [
        (built.score.function, "AwsSolutions::AwsSolutions-L1", LAMBDA_RUNTIME_REASON),
        (built.failures, "AwsSolutions::AwsSolutions-SQS3",
         "this queue is itself the dead-letter destination (the event source mapping's on-failure destination)"),
        (built.stream, "AwsSolutions::AwsSolutions-KDS3",
         "encrypted with the project's customer managed key (rotated, one key policy for all project data) "
         "rather than the AWS managed aws/kinesis key"),
        (role, IAM5.format(archive),
         "archive keys hold the asset id and the day, unknown at synth time; scoped to the archive prefix"),
        (role, IAM5.format("*"), "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no "
                                 "resource-level permissions"),
    ]
