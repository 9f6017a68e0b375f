"""Compose the app: typed config from the context, the four stacks, cdk-nag and its acknowledgments."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.config import AppConfig
from stacks.data_stack import DataStack
from stacks.endpoint_stack import EndpointStack
from stacks.monitoring_stack import MonitoringStack
from stacks.nag import acknowledge_findings
from stacks.network import NetworkStack
from stacks.training_stack import TrainingStack


@dataclass
class PredMaintApp:
    """The stacks of one deployment (returned so tests can inspect them)."""

    config: AppConfig
    data: DataStack
    training: TrainingStack
    endpoint: EndpointStack
    monitoring: MonitoringStack
    network: NetworkStack | None = None  # only in VPC mode (predmaint.vpc.enabled)

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [self.data, self.training, self.endpoint, self.monitoring] + ([self.network] if self.network else [])


def build(app: cdk.App, *, nag: bool = True) -> PredMaintApp:
    """Add the project's stacks to ``app`` (whose context holds the ``predmaint`` config).

    The region is fixed by config (the container image URIs are resolved for it at synth time); the
    account is whatever credentials ``cdk deploy`` uses. With ``nag`` the AwsSolutions checks run as
    a validation plugin: an unacknowledged finding makes synthesis fail.
    """
    config = AppConfig.from_context(app.node.get_all_context())
    env = cdk.Environment(region=config.region)
    data = DataStack(app, config.stack_name("Data"), config=config, env=env)
    network = NetworkStack(app, config.stack_name("Network"), config=config, env=env,
                           key_arn=data.key.key_arn) if config.vpc.enabled else None
    vpc_config = network.sagemaker_vpc_config() if network else None
    training = TrainingStack(app, config.stack_name("Training"), config=config, env=env, key_arn=data.key.key_arn,
                             network=network)
    training.add_stack_dependency(data, "buckets are referenced by name")
    endpoint = EndpointStack(app, config.stack_name("Endpoint"), config=config, env=env, key_arn=data.key.key_arn,
                             hosting_role=training.hosting_role, topic=training.notifications.topic,
                             vpc_config=vpc_config)
    monitoring = MonitoringStack(app, config.stack_name("Monitoring"), config=config, env=env,
                                 state_machine=training.state_machine,
                                 functions=[training.prepare.function, training.promote.function],
                                 key_arn=data.key.key_arn, topic=training.notifications.topic, network=network)
    built = PredMaintApp(config, data, training, endpoint, monitoring, network)
    for stack in built.stacks:
        cdk.Tags.of(stack).add("project", config.project)
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
        acknowledge_findings(built.config, built.training, built.monitoring)
        if built.endpoint.stream is not None:
            from stacks.nag import ack, stream_findings

            for scope, finding, reason in stream_findings(built.config, built.endpoint.stream):
                ack(scope, finding, reason)
    return built
