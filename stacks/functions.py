"""The pipeline's Lambda functions: one construct per function, each with its own role and log group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.assets import stage_lambda
from stacks.config import AppConfig
from stacks.retention import retention

if TYPE_CHECKING:
    from stacks.network import NetworkStack

#: the functions' Python (Lambda's python3.13 runtime, Amazon Linux 2023); ``make lambda-deps`` builds the
#: bundled dependencies for this version (Makefile LAMBDA_PYTHON, checked by tests/test_layers.py)
LAMBDA_PYTHON = "3.13"
RUNTIME = lambda_.Runtime.PYTHON_3_13


class PipelineFunction(Construct):
    """A Python 3.13 Lambda from ``lambda/<name>/`` staged with the shared training_src modules.

    Powertools (Logger, Tracer, Metrics) ships pinned inside the function's package
    (lambda/requirements-bundle.txt, built by ``make lambda-deps``), not from a layer whose content
    cannot be checked here; logs go to an encrypted log group with retention; X-Ray active tracing;
    the role starts empty and callers grant exactly what the function needs.
    """

    def __init__(self, scope: Construct, construct_id: str, *, name: str, config: AppConfig, key: kms.IKey,
                 environment: dict[str, str], timeout: cdk.Duration, memory_mb: int = 512,
                 description: str = "", network: NetworkStack | None = None) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/lambda/{config.project}-{name}", encryption_key=key,
            retention=retention(config.pipeline.log_retention_days),
            removal_policy=cdk.RemovalPolicy.DESTROY)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"{config.project} {name} Lambda")
        self.role.add_to_policy(iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                                    resources=[self.log_group.log_group_arn]))
        in_vpc: dict[str, Any] = {}
        if network is not None:  # VPC mode: isolated subnets, the workload security group
            for st in network.eni_statements(self, lambda_=True):
                self.role.add_to_policy(st)
            in_vpc = {"vpc": network.vpc, "vpc_subnets": network.subnets, "security_groups": [network.jobs_sg]}
        self.function = lambda_.Function(
            self, "Function", function_name=f"{config.project}-{name}", description=description,
            runtime=RUNTIME, architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(stage_lambda(name)), exclude=["__pycache__", "*.pyc"]),
            role=self.role, log_group=self.log_group, timeout=timeout, memory_size=memory_mb,
            tracing=lambda_.Tracing.ACTIVE, environment_encryption=key, **in_vpc,
            environment={
                "POWERTOOLS_SERVICE_NAME": name,
                "POWERTOOLS_METRICS_NAMESPACE": config.project,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **environment,
            })
        # Lambda decrypts its environment with the key
        self.role.add_to_policy(iam.PolicyStatement(actions=["kms:Decrypt"], resources=[key.key_arn]))

    def grant(self, actions: list[str], resources: list[str], conditions: dict | None = None) -> None:
        """Allow ``actions`` on ``resources`` (explicit actions only)."""
        self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions))
