"""promote Lambda: gate a challenger model and register it in the SageMaker Model Registry.

``promote(event, registry_client, read_report, settings)`` is the logic, shared with local mode:

1. validate the event (run id, task, evaluation report location, model data URL);
2. idempotency: if the registry already holds a package for this run (a retried invocation),
   return that package's recorded outcome instead of registering a second one;
3. find the champion: the newest *Approved* package of the group (``list_model_packages`` sorted
   by CreationTime, newest first) and load its evaluation report;
4. decide with ``training_src/promotion.decide`` (the one copy of the rule): absolute thresholds
   AND strictly better than the champion on the same test set; bad metrics raise ``MetricsError``;
5. register the model package as Approved or Rejected, with the evaluation report as its model
   quality metrics and the decision in its customer metadata.

``registry_client`` is a boto3 SageMaker client or anything with the same three methods
(``list_model_packages``, ``describe_model_package``, ``create_model_package``) -- local mode's
registry. The Lambda handler also records an approved champion in SSM Parameter Store, where the
endpoint stack and the state machine's deployment read it.

No ``from __future__ import annotations`` on purpose: see lambda/prepare/handler.py.
"""

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

try:  # repo layout (tests, local mode)
    from training_src import promotion
except ImportError:  # flat Lambda package staged by stacks/assets.py
    import promotion  # type: ignore[no-redef]

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="promote")
tracer = Tracer(service="promote")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PredMaint"), service="promote")

EVENT_KEYS = {"run_id", "task", "profile", "subset", "evaluation_report_uri", "model_data_url", "report"}
RUN_MARKER = "run {run_id}: "
#: how many of the newest packages to scan for an earlier attempt of the same run
IDEMPOTENCY_WINDOW = 100


class InputError(ValueError):
    """The event is malformed; the message says which field and why."""


@dataclass(frozen=True)
class Settings:
    """Registry and deployment settings; from the Lambda environment or given by local mode."""

    model_package_group: str = "predmaint-local"
    image_uri: str = "local"
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    inference_instance_types: tuple[str, ...] = ("ml.m5.large",)
    champion_parameter: str = ""
    champion_package_parameter: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        return cls(
            model_package_group=env["MODEL_PACKAGE_GROUP"],
            image_uri=env["IMAGE_URI"],
            thresholds=json.loads(env.get("THRESHOLDS", "{}")),
            inference_instance_types=tuple(env.get("INFERENCE_INSTANCE_TYPES", "ml.m5.large").split(",")),
            champion_parameter=env.get("CHAMPION_PARAMETER", ""),
            champion_package_parameter=env.get("CHAMPION_PACKAGE_PARAMETER", ""),
        )

    def thresholds_for(self, task: str) -> "promotion.Thresholds":
        return promotion.Thresholds(**(self.thresholds.get(task) or {}))


def parse_event(event: Any) -> dict[str, Any]:
    """Check a promote event; return it. Either ``evaluation_report_uri`` or an inline ``report``."""
    if not isinstance(event, dict):
        raise InputError(f"event must be a JSON object, got {type(event).__name__}")
    unknown = sorted(set(event) - EVENT_KEYS)
    if unknown:
        raise InputError(f"event has unknown field(s) {unknown}; allowed: {sorted(EVENT_KEYS)}")
    run_id = event.get("run_id")
    if not isinstance(run_id, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$", run_id):
        raise InputError(f"event.run_id must be a job-name-safe string, got {run_id!r}")
    if event.get("task") not in promotion.PRIMARY:
        raise InputError(f"event.task must be one of {sorted(promotion.PRIMARY)}, got {event.get('task')!r}")
    if not isinstance(event.get("model_data_url"), str) or not event["model_data_url"]:
        raise InputError("event.model_data_url is required (the refit job's model.tar.gz)")
    if "report" in event:
        if not isinstance(event["report"], dict):
            raise InputError("event.report must be the evaluation report object")
    elif not isinstance(event.get("evaluation_report_uri"), str) or not event["evaluation_report_uri"]:
        raise InputError("event.evaluation_report_uri (or an inline event.report) is required")
    return event


def _newest_packages(registry: Any, group: str, status: str | None = None, limit: int = 1) -> list[dict[str, Any]]:
    """Newest-first package summaries of the group (always CreationTime, Descending)."""
    kwargs: dict[str, Any] = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "SortOrder": "Descending",
                              "MaxResults": min(limit, 100)}
    if status:
        kwargs["ModelApprovalStatus"] = status
    out: list[dict[str, Any]] = []
    while True:
        page = registry.list_model_packages(**kwargs)
        out += page.get("ModelPackageSummaryList", [])
        token = page.get("NextToken")
        if not token or len(out) >= limit:
            return out[:limit]
        kwargs["NextToken"] = token


def find_run_package(registry: Any, group: str, run_id: str) -> dict[str, Any] | None:
    """The package an earlier attempt of this run registered, if any (described)."""
    marker = RUN_MARKER.format(run_id=run_id)
    for summary in _newest_packages(registry, group, limit=IDEMPOTENCY_WINDOW):
        if (summary.get("ModelPackageDescription") or "").startswith(marker):
            return registry.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    return None


def _report_uri(package: dict[str, Any]) -> str | None:
    return (((package.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}).get("S3Uri")


def _outcome(package: dict[str, Any], idempotent: bool) -> dict[str, Any]:
    meta = package.get("CustomerMetadataProperties") or {}
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return {
        "run_id": meta.get("run_id"),
        "approved": package.get("ModelApprovalStatus") == "Approved",
        "status": package.get("ModelApprovalStatus"),
        "reason": meta.get("reason", ""),
        "model_package_arn": package["ModelPackageArn"],
        "model_data_url": containers[0].get("ModelDataUrl"),
        "champion_model_package_arn": meta.get("champion_model_package_arn") or None,
        "idempotent_replay": idempotent,
    }


def promote(event: dict[str, Any], registry_client: Any,
            read_report: Callable[[str], dict[str, Any]] | None = None,
            settings: Settings | None = None) -> dict[str, Any]:
    """Gate the challenger described by ``event`` and register it; return the outcome.

    ``read_report(uri) -> dict`` loads an evaluation report (S3 or a local path). Returns
    ``{run_id, approved, status, reason, model_package_arn, model_data_url,
    champion_model_package_arn, idempotent_replay, decision?}``. Raises ``InputError`` for a bad
    event and ``promotion.MetricsError`` when the challenger's metrics are missing or not finite.
    """
    settings = settings or Settings()
    ev = parse_event(event)
    group = settings.model_package_group

    existing = find_run_package(registry_client, group, ev["run_id"])
    if existing is not None:  # a retry: same run -> same outcome, no second package
        return _outcome(existing, idempotent=True)

    def load(uri: str) -> dict[str, Any]:
        if read_report is None:
            raise InputError(f"no reader for evaluation report {uri}")
        return read_report(uri)

    challenger = ev["report"] if "report" in ev else load(ev["evaluation_report_uri"])
    champion_report = None
    champion_arn = None
    champions = _newest_packages(registry_client, group, status="Approved", limit=1)
    if champions:
        champion_arn = champions[0]["ModelPackageArn"]
        described = registry_client.describe_model_package(ModelPackageName=champion_arn)
        uri = _report_uri(described)
        meta = described.get("CustomerMetadataProperties") or {}
        if uri:
            champion_report = load(uri)
        else:  # registered from an inline report (local mode): flat metrics in the metadata
            champion_report = {**json.loads(meta.get("metrics") or "{}"),
                               "test_fingerprint": meta.get("test_fingerprint")}

    decision = promotion.decide(ev["task"], challenger, champion_report, settings.thresholds_for(ev["task"]))
    flat = promotion.flat_metrics(challenger) or {}
    report_uri = ev.get("evaluation_report_uri")
    metadata = {
        "run_id": ev["run_id"],
        "profile": str(ev.get("profile") or ""),
        "subset": str(ev.get("subset") or ""),
        "reason": decision.reason[:256],
        "primary_metric": decision.primary_metric,
        "challenger_value": "" if decision.challenger_value is None else repr(decision.challenger_value),
        "champion_value": "" if decision.champion_value is None else repr(decision.champion_value),
        "champion_model_package_arn": champion_arn or "",
        "test_fingerprint": str(challenger.get("test_fingerprint") or "")[:256],
        "metrics": json.dumps({k: v for k, v in flat.items() if isinstance(v, int | float)}, sort_keys=True)[:256],
    }
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": (RUN_MARKER.format(run_id=ev["run_id"]) + decision.reason)[:1024],
        "ModelApprovalStatus": decision.status,
        # registry-side idempotency as well (same run -> same token)
        "ClientToken": hashlib.sha256(f"{group}/{ev['run_id']}".encode()).hexdigest()[:36],
        "InferenceSpecification": {
            "Containers": [{
                "Image": settings.image_uri,
                "ModelDataUrl": ev["model_data_url"],
                "Environment": {"SAGEMAKER_PROGRAM": "inference.py",
                                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
            }],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": list(settings.inference_instance_types),
        },
        # the registry rejects empty values: leave absent ones out
        "CustomerMetadataProperties": {k: v for k, v in metadata.items() if v},
    }
    if report_uri:
        request["ModelMetrics"] = {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                                    "S3Uri": report_uri}}}
    arn = registry_client.create_model_package(**request)["ModelPackageArn"]
    return {
        "run_id": ev["run_id"],
        "approved": decision.approved,
        "status": decision.status,
        "reason": decision.reason,
        "model_package_arn": arn,
        "model_data_url": ev["model_data_url"],
        "champion_model_package_arn": champion_arn,
        "idempotent_replay": False,
        "decision": decision.to_dict(),
    }


def _s3_reader(s3: Any) -> Callable[[str], dict[str, Any]]:
    def read(uri: str) -> dict[str, Any]:
        if not uri.startswith("s3://"):
            raise InputError(f"evaluation report location must be an s3:// URI, got {uri!r}")
        bucket, _, key = uri[5:].partition("/")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise promotion.MetricsError(f"{uri} is not valid JSON: {exc}") from exc
    return read


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run ``promote`` against the real registry; record an approved champion in SSM."""
    import boto3  # only in AWS

    settings = Settings.from_env()
    sagemaker = boto3.client("sagemaker")
    outcome = promote(event, sagemaker, _s3_reader(boto3.client("s3")), settings)
    if outcome["approved"] and outcome["idempotent_replay"]:
        # A replay re-records the champion only if this package still IS the champion (the first attempt
        # may have died before writing SSM); a stale retry must not roll the pointer back to an older model.
        newest = _newest_packages(sagemaker, settings.model_package_group, status="Approved", limit=1)
        still_champion = bool(newest) and newest[0]["ModelPackageArn"] == outcome["model_package_arn"]
    else:
        still_champion = outcome["approved"]
    if still_champion and settings.champion_parameter:
        # idempotent (Overwrite): a replayed approval of the current champion writes the same values again
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=settings.champion_parameter, Value=outcome["model_data_url"], Type="String",
                          Overwrite=True)
        if settings.champion_package_parameter:
            ssm.put_parameter(Name=settings.champion_package_parameter, Value=outcome["model_package_arn"],
                              Type="String", Overwrite=True)
    metrics.add_metric(name="ModelsApproved" if outcome["approved"] else "ModelsRejected",
                       unit=MetricUnit.Count, value=1)
    logger.info("promotion decided", extra={k: outcome[k] for k in ("run_id", "status", "reason")})
    return outcome
