"""quality Lambda: start the scheduled live-quality check of the stream's answers.

EventBridge Scheduler invokes this function (daily by default) with the CreateProcessingJob request that
``stacks/quality_monitor.py`` builds at synth time (``{"request": ...}``, the scheduler's execution id
already put into the job name and report prefix). Its S3 inputs are the archive's ``answers/``,
``outcomes/`` and ``risk/`` prefixes (training_src/stream/archive.py). SageMaker fails a processing job
whose S3Prefix input holds no object, and the latter two stay empty until a failure is recorded or an
asset enters risk, so the function lists each prefix now:

- no answer archived yet (the stream has scored nothing): it starts nothing and answers
  ``{"status": "nothing-to-check", "reason": ...}`` (a successful invocation: nothing is wrong);
- otherwise it leaves out the empty optional inputs (the job reads a missing folder as empty), and
  the ``readings`` input (present with ``predmaint.quality.fleet_training_data``: the failed assets'
  histories) when ``outcomes`` is empty, since no failure is recorded to export (it is not listed:
  a recorded failure is archived under ``readings/`` too, so with outcomes it is never empty), starts
  the job (``training_src/stream/quality_job.py``) and answers ``{"status": "started",
  "processing_job_name": ..., "inputs": [...]}``.

The pure part (``plan_check``) takes the listing as a function, for tests and the deploy rehearsal.
No ``from __future__ import annotations``: see lambda/prepare/handler.py.
"""

import copy
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="quality")
tracer = Tracer(service="quality")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PredMaint"), service="quality")

#: the ProcessingInputs of the archive: answers are required, the others may be left out
ANSWERS, OPTIONAL = "answers", ("outcomes", "risk")
#: the input of the failed assets' readings, when the schedule's request has it: read only with outcomes
READINGS = "readings"
NOTHING = "nothing-to-check"


class InputError(ValueError):
    """The event is not the schedule's request; the message says what is missing."""


def _archive_inputs(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    try:
        found = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    except (KeyError, TypeError) as exc:
        raise InputError(f"event.request must be a CreateProcessingJob request with S3 ProcessingInputs ({exc})") \
            from None
    missing = [n for n in (ANSWERS, *OPTIONAL) if n not in found]
    if missing:
        raise InputError(f"event.request has no ProcessingInputs named {missing}")
    return found


def plan_check(event: Any, has_objects: Callable[[str], bool]) -> dict[str, Any]:
    """What this run does: ``{"status": "nothing-to-check", "reason"}`` or ``{"status": "start", "request"}``
    (the request without its empty optional inputs). ``has_objects(s3_uri)``: whether any object lies
    under an S3 prefix."""
    if not isinstance(event, dict) or not isinstance(event.get("request"), dict):
        raise InputError("event must be {\"request\": <CreateProcessingJob request>} (the quality schedule's input)")
    request = copy.deepcopy(event["request"])
    inputs = _archive_inputs(request)
    answers = inputs[ANSWERS]["S3Uri"]
    if not has_objects(answers):
        return {"status": NOTHING, "reason": f"no archived answer under {answers} yet: the stream has scored "
                                             "nothing (or is not deployed)"}
    empty = {n for n in OPTIONAL if not has_objects(inputs[n]["S3Uri"])}
    if "outcomes" in empty:
        empty.add(READINGS)
    request["ProcessingInputs"] = [i for i in request["ProcessingInputs"] if i["InputName"] not in empty]
    return {"status": "start", "request": request}


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``{"request": <CreateProcessingJob request>}`` -> the job started, or why nothing needed checking."""
    import boto3  # only in AWS

    s3 = boto3.client("s3")

    def has_objects(uri: str) -> bool:
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        return s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0) > 0

    plan = plan_check(event, has_objects)
    if plan["status"] == NOTHING:
        logger.info("quality check: nothing to check", extra={"reason": plan["reason"]})
        metrics.add_metric(name="QualityChecksSkipped", unit=MetricUnit.Count, value=1)
        return plan
    request = plan["request"]
    boto3.client("sagemaker").create_processing_job(**request)
    names = [i["InputName"] for i in request["ProcessingInputs"]]
    logger.info("quality check started", extra={"job": request["ProcessingJobName"], "inputs": names})
    metrics.add_metric(name="QualityChecksStarted", unit=MetricUnit.Count, value=1)
    return {"status": "started", "processing_job_name": request["ProcessingJobName"], "inputs": names}
