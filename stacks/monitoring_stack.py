"""Monitoring stack: one CloudWatch dashboard for the endpoint and the training pipeline, the
scheduled drift check of the endpoint's captured traffic (``DriftMonitor``) and, with the stream
enabled, the scheduled live-quality check of its answers (``QualityMonitor``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import FLEET_PAGE_OUTPUT, AppConfig
from stacks.drift_monitor import DriftMonitor
from stacks.endpoint_stack import endpoint_metric
from stacks.quality_monitor import QualityMonitor

if TYPE_CHECKING:
    from stacks.network import NetworkStack


class MonitoringStack(cdk.Stack):
    """Dashboard: endpoint traffic, latency, errors, capacity; pipeline executions; Lambda health.

    The endpoint is referenced by name (from config), so this stack can be deployed before the
    endpoint exists; its widgets fill once it serves traffic.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, state_machine: sfn.IStateMachine,
                 functions: list[lambda_.IFunction], key_arn: str, topic: sns.ITopic,
                 network: NetworkStack | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, description=f"{config.project}: dashboard and drift check", **kwargs)
        from stacks.training_stack import project_storage

        c = config
        self.drift = self.quality = None
        if c.drift.enabled or (c.stream.enabled and c.quality.enabled):
            key, data, artifacts = project_storage(self, c, key_arn)
        if c.drift.enabled:
            self.drift = DriftMonitor(self, "Drift", config=c, artifacts=artifacts, key=key, topic=topic,
                                      state_machine=state_machine, network=network)
        if c.stream.enabled and c.quality.enabled:
            self.quality = QualityMonitor(self, "Quality", config=c, artifacts=artifacts, key=key, topic=topic,
                                          state_machine=state_machine, network=network, data=data)
        minute = 60
        em = lambda name, stat: endpoint_metric(c, name, stat, minute)  # noqa: E731
        instance_count = cloudwatch.MathExpression(
            expression="invocations / FILL(per_instance, 1)", label="instances (approx.)",
            using_metrics={"invocations": em("Invocations", "Sum"),
                           "per_instance": em("InvocationsPerInstance", "Sum")},
            period=cdk.Duration.minutes(1))
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{c.project}-overview")
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown=f"# {c.project}\nEndpoint `{c.endpoint.name}` and training pipeline "
                                           f"`{c.state_machine_name}`", width=24, height=2))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Invocations / instance (autoscaling target "
                                         f"{c.endpoint.target_invocations_per_instance:g})",
                                   left=[em("InvocationsPerInstance", "Sum"), em("Invocations", "Sum")], width=8),
            cloudwatch.GraphWidget(title="Model latency (µs)",
                                   left=[em("ModelLatency", "p50"), em("ModelLatency", "p99"),
                                         em("OverheadLatency", "p99")], width=8),
            cloudwatch.GraphWidget(title="Errors", left=[em("Invocation4XXErrors", "Sum"),
                                                         em("Invocation5XXErrors", "Sum")], width=8),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Endpoint capacity", left=[instance_count], width=8),
            cloudwatch.GraphWidget(title="Training executions",
                                   left=[state_machine.metric_started(), state_machine.metric_succeeded(),
                                         state_machine.metric_failed(), state_machine.metric_timed_out()], width=8),
            cloudwatch.GraphWidget(title="Pipeline Lambdas",
                                   left=[f.metric_errors() for f in functions] + [f.metric_throttles() for f in functions],
                                   right=[f.metric_duration(statistic="p99") for f in functions], width=8),
        )
        if self.drift is not None:
            self.dashboard.add_widgets(cloudwatch.AlarmWidget(title="Input drift (drifted features per check)",
                                                              alarm=self.drift.alarm, width=8))
        if self.quality is not None:
            cdk.CfnOutput(self, FLEET_PAGE_OUTPUT, value=self.quality.fleet_page_uri,
                          description="the fleet page the quality check writes (predmaint fleet --aws)")
            self.dashboard.add_widgets(*[cloudwatch.AlarmWidget(title=f"Live quality: {a.node.id}", alarm=a, width=8)
                                         for a in self.quality.alarms])
        cdk.CfnOutput(self, "DashboardName", value=self.dashboard.dashboard_name)
