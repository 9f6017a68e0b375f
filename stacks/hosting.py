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


def deployment_config(config: AppConfig) -> dict[str, Any]:
    """Blue/green canary with auto-rollback on the endpoint alarms (API shape)."""
    e = config.endpoint
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": e.canary_wait_seconds,
                                            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": e.canary_percent}},
            "TerminationWaitInSeconds": e.termination_wait_seconds,
            "MaximumExecutionTimeoutInSeconds": max(600, 2 * e.canary_wait_seconds + e.termination_wait_seconds + 1800),
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in config.alarm_names]},
    }
