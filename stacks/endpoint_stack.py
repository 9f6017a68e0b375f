"""Endpoint stack: the champion model behind an autoscaling real-time endpoint, with its alarms.

The champion's model data URL is read from the SSM parameter the promote Lambda writes, so this
stack is deployed after the first successful training run (see docs/aws.md). Later promotions
update the endpoint in place from the state machine (blue/green canary, same variant name);
re-deploying this stack afterwards converges on the same champion because it reads the same
parameter.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks.config import AppConfig
from stacks.hosting import data_capture, deployment_config, hosting_environment
from stacks.images import xgboost_image_uri


def endpoint_metric(config: AppConfig, name: str, statistic: str, period_s: int | None = None) -> cloudwatch.Metric:
    """A SageMaker endpoint-variant metric of this deployment's endpoint."""
    return cloudwatch.Metric(
        namespace="AWS/SageMaker", metric_name=name, statistic=statistic,
        period=cdk.Duration.seconds(period_s or config.alarms.period_seconds),
        dimensions_map={"EndpointName": config.endpoint.name, "VariantName": config.endpoint.variant_name})


class EndpointAlarms(Construct):
    """5XX errors and p99 model latency; their names are what UpdateEndpoint rolls back on."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id)
        a = config.alarms
        errors_name, latency_name = config.alarm_names
        self.errors = cloudwatch.Alarm(
            self, "Errors5xx", alarm_name=errors_name,
            alarm_description="endpoint returned 5XX errors (also rolls back a blue/green deployment)",
            metric=endpoint_metric(config, "Invocation5XXErrors", "Sum"), threshold=a.errors_5xx_threshold,
            evaluation_periods=a.evaluation_periods, datapoints_to_alarm=min(2, a.evaluation_periods),
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        self.latency = cloudwatch.Alarm(
            self, "LatencyP99", alarm_name=latency_name,
            alarm_description=f"p99 model latency above {a.model_latency_p99_ms} ms",
            # ModelLatency is reported in microseconds
            metric=endpoint_metric(config, "ModelLatency", "p99"), threshold=a.model_latency_p99_ms * 1000,
            evaluation_periods=a.evaluation_periods, datapoints_to_alarm=min(2, a.evaluation_periods),
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        for alarm in (self.errors, self.latency):
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
            alarm.add_ok_action(cw_actions.SnsAction(topic))


class ChampionEndpoint(Construct):
    """Model (champion from SSM) -> EndpointConfig (data capture, KMS) -> Endpoint."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, hosting_role: iam.IRole,
                 artifacts: s3.IBucket, key: kms.IKey, rollback_alarms: list[cloudwatch.Alarm],
                 vpc_config: dict | None = None) -> None:
        super().__init__(scope, construct_id)
        e = config.endpoint
        model_data_url = ssm.StringParameter.value_for_string_parameter(self, config.champion_parameter)
        # network isolation: the container needs no network (code/ ships inside model.tar.gz, which
        # SageMaker downloads for it); data capture is done by the platform, outside the container
        self.model = sagemaker.CfnModel(
            self, "Model", execution_role_arn=hosting_role.role_arn, enable_network_isolation=True,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=xgboost_image_uri(config.region), mode="SingleModel", model_data_url=model_data_url,
                environment=hosting_environment(config)),
            vpc_config=sagemaker.CfnModel.VpcConfigProperty(
                security_group_ids=vpc_config["SecurityGroupIds"], subnets=vpc_config["Subnets"])
            if vpc_config else None)
        capture = data_capture(config, artifacts, key.key_arn)
        self.config = sagemaker.CfnEndpointConfig(
            self, "Config", kms_key_id=key.key_arn,
            production_variants=[sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=e.variant_name, model_name=self.model.attr_model_name,
                instance_type=e.instance_type, initial_instance_count=e.initial_instance_count,
                initial_variant_weight=1.0)],
            data_capture_config=sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True, initial_sampling_percentage=capture["InitialSamplingPercentage"],
                destination_s3_uri=capture["DestinationS3Uri"], kms_key_id=key.key_arn,
                capture_options=[sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode=m)
                                 for m in ("Input", "Output")],
                capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                    json_content_types=["application/json"])))
        dc = deployment_config(config)
        bg = dc["BlueGreenUpdatePolicy"]
        routing = bg["TrafficRoutingConfiguration"]
        canary = routing.get("CanarySize")
        self.endpoint = sagemaker.CfnEndpoint(
            self, "Endpoint", endpoint_name=e.name, endpoint_config_name=self.config.attr_endpoint_config_name,
            retain_all_variant_properties=True,
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                        type=routing["Type"], wait_interval_in_seconds=routing["WaitIntervalInSeconds"],
                        canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(type=canary["Type"],
                                                                               value=canary["Value"])
                        if canary else None),
                    termination_wait_in_seconds=bg["TerminationWaitInSeconds"],
                    maximum_execution_timeout_in_seconds=bg["MaximumExecutionTimeoutInSeconds"]),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[sagemaker.CfnEndpoint.AlarmProperty(alarm_name=a.alarm_name) for a in rollback_alarms])))


class EndpointAutoscaling(Construct):
    """Target tracking on SageMakerVariantInvocationsPerInstance, bounds and cooldowns from config."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, endpoint: sagemaker.CfnEndpoint) -> None:
        super().__init__(scope, construct_id)
        e = config.endpoint
        # Application Auto Scaling assumes the role it is given; CDK's default is a new role with no
        # permissions, which could never call UpdateEndpointWeightsAndCapacities. The service-linked
        # role holds exactly those (AWS managed) and is created on first registration when named here.
        stack = cdk.Stack.of(self)
        service_linked = iam.Role.from_role_arn(
            self, "ServiceLinkedRole", f"arn:{stack.partition}:iam::{stack.account}:role/aws-service-role/"
            "sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
            mutable=False)
        self.target = appscaling.ScalableTarget(
            self, "Target", service_namespace=appscaling.ServiceNamespace.SAGEMAKER, role=service_linked,
            resource_id=f"endpoint/{endpoint.attr_endpoint_name}/variant/{e.variant_name}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=e.min_capacity, max_capacity=e.max_capacity)
        self.target.scale_to_track_metric(
            "InvocationsPerInstance", target_value=e.target_invocations_per_instance,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=cdk.Duration.seconds(e.scale_in_cooldown_seconds),
            scale_out_cooldown=cdk.Duration.seconds(e.scale_out_cooldown_seconds))


class EndpointStack(cdk.Stack):
    """Champion endpoint, autoscaling and alarms. Deploy after the first promoted training run."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, hosting_role: iam.IRole,
                 key_arn: str, topic: sns.ITopic, vpc_config: dict | None = None, **kwargs) -> None:
        super().__init__(scope, construct_id, description=f"{config.project}: real-time endpoint", **kwargs)
        from stacks.training_stack import project_storage

        key, _, artifacts_bucket = project_storage(self, config, key_arn)
        self.alarms = EndpointAlarms(self, "Alarms", config=config, topic=topic)
        self.champion = ChampionEndpoint(self, "Champion", config=config, hosting_role=hosting_role,
                                         artifacts=artifacts_bucket, key=key,
                                         rollback_alarms=[self.alarms.errors, self.alarms.latency],
                                         vpc_config=vpc_config)
        self.autoscaling = EndpointAutoscaling(self, "Autoscaling", config=config, endpoint=self.champion.endpoint)
        self.stream = None
        if config.stream.enabled:  # Kinesis -> score Lambda -> state table and archive (docs/streaming.md)
            from stacks.streaming import StreamScoring

            self.stream = StreamScoring(self, "Stream", config=config, key=key, artifacts=artifacts_bucket,
                                         topic=topic)
        cdk.CfnOutput(self, "EndpointName", value=self.champion.endpoint.attr_endpoint_name)
