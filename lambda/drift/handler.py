"""drift Lambda: start the scheduled drift check against the champion of the moment.

EventBridge Scheduler invokes this function (daily by default) with the CreateProcessingJob request
that ``stacks/drift_monitor.py`` builds at synth time (``{"request": ...}``, the scheduler's execution id
already put into the job name and result prefix). The function fills in what only run time knows:

1. the champion: the model data URL the promote Lambda last recorded in SSM Parameter Store
   (``CHAMPION_PARAMETER``), read now, so a promotion is checked against from the next run on, with
   no redeploy;
2. whether there is anything to check: SageMaker fails a processing job whose S3Prefix input holds
   no object, and the capture prefix is empty until the endpoint has served a request.

With no champion yet, or no captured request yet, it starts nothing and answers
``{"status": "nothing-to-check", "reason": ...}`` (a successful invocation: nothing is wrong). Otherwise
it starts the processing job (``training_src/drift.py`` in the container) and answers
``{"status": "started", "processing_job_name": ..., "model": ...}``.

The pure part (``plan_check``) takes the two look-ups as functions, for tests and the deploy rehearsal.
No ``from __future__ import annotations``: see lambda/prepare/handler.py.
"""

import copy
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="drift")
tracer = Tracer(service="drift")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PredMaint"), service="drift")

#: the ProcessingInputs the request must carry: the champion's model, the endpoint's capture records
MODEL_INPUT, CAPTURE_INPUT = "model", "capture"
NOTHING = "nothing-to-check"


class InputError(ValueError):
    """The event is not the schedule's request; the message says what is missing."""


def _inputs(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    try:
        found = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    except (KeyError, TypeError) as exc:
        raise InputError(f"event.request must be a CreateProcessingJob request with S3 ProcessingInputs ({exc})") \
            from None
    missing = [n for n in (MODEL_INPUT, CAPTURE_INPUT) if n not in found]
    if missing:
        raise InputError(f"event.request has no ProcessingInputs named {missing}")
    return found


def plan_check(event: Any, champion: Callable[[], str | None], has_objects: Callable[[str], bool]) -> dict[str, Any]:
    """What this run does: ``{"status": "nothing-to-check", "reason"}`` or ``{"status": "start", "request"}``.

    ``champion()`` returns the recorded champion's model data URL (None when none is recorded);
    ``has_objects(s3_uri)`` whether any object lies under an S3 prefix.
    """
    if not isinstance(event, dict) or not isinstance(event.get("request"), dict):
        raise InputError("event must be {\"request\": <CreateProcessingJob request>} (the drift schedule's input)")
    request = copy.deepcopy(event["request"])
    inputs = _inputs(request)
    model = champion()
    if not model:
        return {"status": NOTHING, "reason": "no champion is recorded yet: the first training run records one"}
    capture = inputs[CAPTURE_INPUT]["S3Uri"]
    if not has_objects(capture):
        return {"status": NOTHING, "reason": f"no captured request under {capture} yet: the endpoint has served "
                                             "no traffic (or is not deployed)"}
    inputs[MODEL_INPUT]["S3Uri"] = model
    return {"status": "start", "request": request}


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``{"request": <CreateProcessingJob request>}`` -> the job started, or why nothing needed checking."""
    import boto3  # only in AWS
    from botocore.exceptions import ClientError

    parameter = os.environ["CHAMPION_PARAMETER"]
    ssm, s3 = boto3.client("ssm"), boto3.client("s3")

    def champion() -> str | None:
        try:
            return ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ParameterNotFound":
                return None
            raise

    def has_objects(uri: str) -> bool:
        bucket, prefix = _split_s3(uri)
        return s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0

    plan = plan_check(event, champion, has_objects)
    if plan["status"] == NOTHING:
        logger.info("drift check: nothing to check", extra={"reason": plan["reason"]})
        metrics.add_metric(name="DriftChecksSkipped", unit=MetricUnit.Count, value=1)
        return plan
    request = plan["request"]
    boto3.client("sagemaker").create_processing_job(**request)
    model = _inputs(request)[MODEL_INPUT]["S3Uri"]
    logger.info("drift check started", extra={"job": request["ProcessingJobName"], "model": model})
    metrics.add_metric(name="DriftChecksStarted", unit=MetricUnit.Count, value=1)
    return {"status": "started", "processing_job_name": request["ProcessingJobName"], "model": model}
