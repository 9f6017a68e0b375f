"""How the champion is hosted: container environment, data capture, blue/green deployment.

One definition for both places that create hosting resources: the state machine (CreateModel,
CreateEndpointConfig, UpdateEndpoint API requests) and the endpoint stack (the CloudFormation
model, endpoint config and endpoint). The shapes are the SageMaker API's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stacks.config import AppConfig

if TYPE_CHECKING:  # annotations only: the container environment is also read without the CDK
    from aws_cdk import aws_s3 as s3  # (notebooks/sagemaker.ipynb via predmaint/sdk.py)


def hosting_environment(config: AppConfig) -> dict[str, str]:
    """Container environment of the hosted model: script mode with code/ inside model.tar.gz."""
    return {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "SAGEMAKER_REGION": config.region,
            "PREDMAINT_MAX_INSTANCES": str(config.endpoint.max_instances_per_request)}


def data_capture(config: AppConfig, artifacts: s3.IBucket, key_arn: str) -> dict[str, Any]:
    """DataCaptureConfig (API shape) writing request/response JSON to the artifacts bucket with KMS."""
    return {"EnableCapture": True, "InitialSamplingPercentage": config.endpoint.data_capture_percent,
            "DestinationS3Uri": artifacts.s3_url_for_object(f"data-capture/{config.endpoint.name}"),
            "KmsKeyId": key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]}}


#: SageMaker's rule for blue/green traffic shifting: a canary step is at most half of the variant's
#: instances (TrafficRoutingConfig.CanarySize, API reference; "the canary size should be less than or
#: equal to 50% of the new fleet's capacity", deployment-guardrails-blue-green-canary.html)
MAX_CANARY_SHARE = 0.5


def canary_instances(config: AppConfig) -> int:
    """Instances of the canary step, or 0 when no canary fits the configured capacity.

    The variant's instance count at update time is whatever autoscaling left it at (UpdateEndpoint keeps
    it: RetainAllVariantProperties), anywhere in ``min_capacity..max_capacity``. A canary of ``k`` whole
    instances is valid for every such count ``n`` when ``k <= MAX_CANARY_SHARE * min_capacity``; with
    ``min_capacity`` 1 no canary is (one instance is all of a one-instance fleet)."""
    e = config.endpoint
    k = max(1, int(e.canary_percent * e.min_capacity // 100))
    return k if k <= MAX_CANARY_SHARE * e.min_capacity else 0


def deployment_config(config: AppConfig) -> dict[str, Any]:
    """Blue/green deployment with auto-rollback on the endpoint alarms (API shape), valid for the capacity.

    With ``min_capacity`` >= 2: CANARY, ``canary_instances`` instances (INSTANCE_COUNT, so the size never
    depends on how SageMaker rounds a percentage of a small fleet), baked ``canary_wait_seconds`` while
    the alarms watch, then the rest. With one instance: ALL_AT_ONCE -- SageMaker starts a whole green
    fleet beside the blue one, moves all traffic to it, and bakes ``canary_wait_seconds +
    termination_wait_seconds`` with the alarms armed before it ends the blue fleet; an alarm in that
    time rolls every request back to the blue fleet, which is still running.
    """
    e = config.endpoint
    k = canary_instances(config)
    if k:
        routing: dict[str, Any] = {"Type": "CANARY", "WaitIntervalInSeconds": e.canary_wait_seconds,
                                   "CanarySize": {"Type": "INSTANCE_COUNT", "Value": k}}
        bake = e.termination_wait_seconds
    else:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        bake = e.canary_wait_seconds + e.termination_wait_seconds
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": min(bake, 3600),
            "MaximumExecutionTimeoutInSeconds": max(600, 2 * e.canary_wait_seconds + e.termination_wait_seconds + 1800),
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in config.alarm_names]},
    }
