"""promote Lambda: gate a challenger, register it, and move the champion only once it serves.

Three actions, all idempotent (Step Functions retries Lambdas):

* ``promote`` (default) -- ``promote(event, registry_client, read_report, settings, copy_model)``, the
  logic shared with local mode:

  1. validate the event (run id, task, evaluation report location, model data URL);
  2. idempotency: if the registry already holds a package for this run (a retried invocation),
     return that package's recorded outcome instead of registering a second one;
  3. find the champion: the newest *Approved* package of the group (``list_model_packages`` sorted
     by CreationTime, newest first) and load its evaluation report;
  4. decide with ``training_src/promotion.decide`` (the one copy of the rule): absolute thresholds
     AND strictly better than the champion on the same test set; bad metrics raise ``MetricsError``;
  5. a challenger that passes is copied out of ``runs/`` (which expires) to
     ``models/<run_id>/model.tar.gz`` and ``models/<run_id>/evaluation.json`` (kept: the endpoint and
     the drift check read the model, later runs' gates read the report) and registered
     ``PendingManualApproval``; one that fails is registered ``Rejected``. The evaluation report is
     the package's model-quality statistics, the decision its description and metadata.

* ``confirm`` -- ``confirm(event, registry_client, settings)``: the endpoint now serves the package
  (or there is no endpoint yet): mark it ``Approved``, and the handler records it as the champion in
  SSM Parameter Store, where the endpoint stack reads it.
* ``reject`` -- ``reject(event, registry_client)``: the blue/green deployment rolled back or failed:
  mark the package ``Rejected`` with the reason; the champion stays where it was.

So the champion pointer never names a model that is not serving, and a rolled-back model never
stays approved.

``registry_client`` is a boto3 SageMaker client or anything with the same methods
(``list_model_packages``, ``describe_model_package``, ``create_model_package``,
``update_model_package``) -- local mode's registry.

No ``from __future__ import annotations`` on purpose: see lambda/prepare/handler.py.
"""

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from training_src import promotion

logger = Logger(service="promote")
tracer = Tracer(service="promote")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PredMaint"), service="promote")

EVENT_KEYS = {"action", "run_id", "task", "profile", "subset", "evaluation_report_uri", "model_data_url", "report"}
DECISION_KEYS = {"action", "run_id", "model_package_arn", "reason"}
ACTIONS = ("promote", "confirm", "reject")
#: the status of a challenger that passed the gate and waits for its deployment
PENDING = "PendingManualApproval"
#: CustomerMetadataProperties values: letters, numbers, spaces and ``_.:/=+-@`` only, 1-256 chars
_META_PUNCTUATION = frozenset("_.:/=+-@")
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
    #: ``s3://<artifacts>/models/``: where a challenger that passed the gate is kept (``runs/`` expires)
    models_uri: str = ""

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
            models_uri=env.get("MODELS_URI", ""),
        )

    def thresholds_for(self, task: str) -> "promotion.Thresholds":
        return promotion.Thresholds(**(self.thresholds.get(task) or {}))


def _check_run_id(run_id: Any) -> None:
    if not isinstance(run_id, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$", run_id):
        raise InputError(f"event.run_id must be a job-name-safe string, got {run_id!r}")


def parse_event(event: Any) -> dict[str, Any]:
    """Check a promote event; return it. Either ``evaluation_report_uri`` or an inline ``report``."""
    if not isinstance(event, dict):
        raise InputError(f"event must be a JSON object, got {type(event).__name__}")
    unknown = sorted(set(event) - EVENT_KEYS)
    if unknown:
        raise InputError(f"event has unknown field(s) {unknown}; allowed: {sorted(EVENT_KEYS)}")
    _check_run_id(event.get("run_id"))
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


def parse_decision_event(event: Any, action: str) -> dict[str, Any]:
    """Check a ``confirm``/``reject`` event: ``{"model_package_arn": ..., "run_id": ..., "reason"?: ...}``."""
    if not isinstance(event, dict):
        raise InputError(f"event must be a JSON object, got {type(event).__name__}")
    unknown = sorted(set(event) - DECISION_KEYS)
    if unknown:
        raise InputError(f"{action} event has unknown field(s) {unknown}; allowed: {sorted(DECISION_KEYS)}")
    _check_run_id(event.get("run_id"))
    arn = event.get("model_package_arn")
    if not isinstance(arn, str) or not arn:
        raise InputError(f"{action} event.model_package_arn is required (the promote action's model_package_arn)")
    if action == "reject" and (not isinstance(event.get("reason"), str) or not event["reason"]):
        raise InputError("reject event.reason is required (why the deployment did not take the model)")
    return event


def metadata_value(text: Any, limit: int = 256) -> str:
    """``text`` as a CustomerMetadataProperties value: the API accepts letters, numbers, spaces and
    ``_.:/=+-@`` only (1-256 characters); anything else becomes ``-``, runs of it one ``-``."""
    out: list[str] = []
    for ch in str(text):
        ok = unicodedata.category(ch)[0] in "LNZ" or ch in _META_PUNCTUATION
        if ok:
            out.append(ch)
        elif not out or out[-1] != "-":
            out.append("-")
    return "".join(out).strip()[:limit]


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
    description = package.get("ModelPackageDescription") or ""
    status = package.get("ModelApprovalStatus")
    return {
        "run_id": meta.get("run_id"),
        # passed the gate: pending its deployment, or already deployed (Approved) on an earlier attempt
        "approved": status in (PENDING, "Approved"),
        "status": status,
        "reason": description.split(": ", 1)[-1],
        "model_package_arn": package["ModelPackageArn"],
        "model_data_url": containers[0].get("ModelDataUrl"),
        "champion_model_package_arn": meta.get("champion_model_package_arn") or None,
        "idempotent_replay": idempotent,
    }


def _metadata_metrics(meta: dict[str, str]) -> dict[str, Any]:
    """Flat metrics of a package registered from an inline report (local mode): ``metric_<name>`` keys."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key.startswith("metric_"):
            try:
                out[key[len("metric_"):]] = float(value)
            except ValueError:
                out[key[len("metric_"):]] = value
    return out


def promote(event: dict[str, Any], registry_client: Any,
            read_report: Callable[[str], dict[str, Any]] | None = None,
            settings: Settings | None = None,
            copy_model: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Gate the challenger described by ``event`` and register it; return the outcome.

    ``read_report(uri) -> dict`` loads an evaluation report (S3 or a local path);
    ``copy_model(source_url, target_url)`` keeps a challenger that passed (model and report) out of the
    expiring ``runs/`` prefix (used when ``settings.models_uri`` is set and the model is in S3). Returns
    ``{run_id, approved, status, reason, model_package_arn, model_data_url,
    champion_model_package_arn, idempotent_replay, decision?}``: ``approved`` means it passed the
    gate (status ``PendingManualApproval`` until ``confirm``). Raises ``InputError`` for a bad event
    and ``promotion.MetricsError`` when the challenger's metrics are missing or not finite.
    """
    settings = settings or Settings()
    ev = parse_event(event)
    group = settings.model_package_group

    existing = find_run_package(registry_client, group, ev["run_id"])
    if existing is not None:  # a retry: same run -> same outcome, no second package
        outcome = _outcome(existing, idempotent=True)
        if outcome["approved"]:
            # ... unless another run became the champion since this one was gated: deploying this one
            # now would roll the endpoint back to an older model
            newest = _newest_packages(registry_client, group, status="Approved", limit=1)
            current = newest[0]["ModelPackageArn"] if newest else None
            if current not in (outcome["model_package_arn"], outcome["champion_model_package_arn"]):
                outcome.update(approved=False, reason=f"superseded: {current} became the champion after "
                                                      f"run {ev['run_id']} was gated")
        return outcome

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
            champion_report = {**_metadata_metrics(meta), "test_fingerprint": meta.get("test_fingerprint")}

    decision = promotion.decide(ev["task"], challenger, champion_report, settings.thresholds_for(ev["task"]))
    model_data_url = ev["model_data_url"]
    report_uri = ev.get("evaluation_report_uri")
    if decision.approved and settings.models_uri and model_data_url.startswith("s3://"):
        # everything a champion is read by later lives where nothing expires it: its model (hosting,
        # scale-out, the drift check) and its evaluation report (the next runs' gate compares with it)
        kept_root = f"{settings.models_uri.rstrip('/')}/{ev['run_id']}/"
        if copy_model is None:
            raise InputError(f"no copier to keep {model_data_url} under {kept_root}")
        copy_model(model_data_url, kept_root + "model.tar.gz")
        model_data_url = kept_root + "model.tar.gz"
        if report_uri and report_uri.startswith("s3://"):
            copy_model(report_uri, kept_root + "evaluation.json")
            report_uri = kept_root + "evaluation.json"
    flat = promotion.flat_metrics(challenger) or {}
    metadata = {
        "run_id": ev["run_id"],
        "profile": ev.get("profile") or "",
        "subset": ev.get("subset") or "",
        "decision": "passed" if decision.approved else "failed",
        "reason": decision.reason,
        "primary_metric": decision.primary_metric,
        "challenger_value": "" if decision.challenger_value is None else repr(decision.challenger_value),
        "champion_value": "" if decision.champion_value is None else repr(decision.champion_value),
        "champion_model_package_arn": champion_arn or "",
        "test_fingerprint": challenger.get("test_fingerprint") or "",
        **{f"metric_{k}": repr(float(v)) for k, v in sorted(flat.items())
           if isinstance(v, int | float) and not isinstance(v, bool)},
    }
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": (RUN_MARKER.format(run_id=ev["run_id"]) + decision.reason)[:1024],
        "ModelApprovalStatus": PENDING if decision.approved else "Rejected",
        # registry-side idempotency as well (same run -> same token)
        "ClientToken": hashlib.sha256(f"{group}/{ev['run_id']}".encode()).hexdigest()[:36],
        "InferenceSpecification": {
            "Containers": [{
                "Image": settings.image_uri,
                "ModelDataUrl": model_data_url,
                "Environment": {"SAGEMAKER_PROGRAM": "inference.py",
                                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
            }],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": list(settings.inference_instance_types),
        },
        # the registry rejects empty values and most punctuation: values are cleaned, empty ones left out
        "CustomerMetadataProperties": {k: v for k, v in ((k, metadata_value(v)) for k, v in metadata.items()) if v},
    }
    if report_uri:
        request["ModelMetrics"] = {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                                    "S3Uri": report_uri}}}
    arn = registry_client.create_model_package(**request)["ModelPackageArn"]
    return {
        "run_id": ev["run_id"],
        "approved": decision.approved,
        "status": request["ModelApprovalStatus"],
        "reason": decision.reason,
        "model_package_arn": arn,
        "model_data_url": model_data_url,
        "champion_model_package_arn": champion_arn,
        "idempotent_replay": False,
        "decision": decision.to_dict(),
    }


def _set_status(registry: Any, event: dict[str, Any], status: str, description: str) -> dict[str, Any]:
    package = registry.describe_model_package(ModelPackageName=event["model_package_arn"])
    current = package.get("ModelApprovalStatus")
    if current != status:
        registry.update_model_package(ModelPackageArn=event["model_package_arn"], ModelApprovalStatus=status,
                                      ApprovalDescription=description[:1024])
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return {"run_id": event["run_id"], "status": status, "model_package_arn": event["model_package_arn"],
            "model_data_url": containers[0].get("ModelDataUrl"), "idempotent_replay": current == status}


def confirm(event: dict[str, Any], registry_client: Any) -> dict[str, Any]:
    """The endpoint serves the package (or no endpoint exists yet): mark it ``Approved``.

    Refuses a package that is ``Rejected`` (a rolled-back model never becomes the champion)."""
    ev = parse_decision_event(event, "confirm")
    package = registry_client.describe_model_package(ModelPackageName=ev["model_package_arn"])
    if package.get("ModelApprovalStatus") == "Rejected":
        raise InputError(f"{ev['model_package_arn']} is Rejected; a rejected model cannot become the champion")
    return _set_status(registry_client, ev, "Approved", f"run {ev['run_id']}: deployed; now the champion")


def reject(event: dict[str, Any], registry_client: Any) -> dict[str, Any]:
    """The deployment rolled back or failed: mark the package ``Rejected`` with the reason."""
    ev = parse_decision_event(event, "reject")
    return _set_status(registry_client, ev, "Rejected", f"run {ev['run_id']}: not deployed: {ev['reason']}")


def ensure_group(registry: Any, group: str, description: str) -> bool:
    """Create the model package group on first use; True if this call created it.

    The group is not a stack resource: CloudFormation cannot delete a group that holds packages (so
    ``cdk destroy`` of the training stack would fail), and a group kept by a retain policy would make
    the next deploy fail with "already exists". Created here, it outlives the stacks, and a redeploy
    finds the registry -- and its champion -- where it was."""
    from botocore.exceptions import ClientError

    try:
        registry.describe_model_package_group(ModelPackageGroupName=group)
        return False
    except ClientError as exc:
        if "does not exist" not in str(exc):
            raise
    try:
        registry.create_model_package_group(ModelPackageGroupName=group, ModelPackageGroupDescription=description)
    except ClientError:  # a concurrent first run created it
        registry.describe_model_package_group(ModelPackageGroupName=group)
        return False
    return True


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise InputError(f"expected an s3:// URI, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _s3_reader(s3: Any) -> Callable[[str], dict[str, Any]]:
    def read(uri: str) -> dict[str, Any]:
        bucket, key = _split_s3(uri)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise promotion.MetricsError(f"{uri} is not valid JSON: {exc}") from exc
    return read


def _s3_copier(s3: Any) -> Callable[[str, str], None]:
    def copy(source: str, target: str) -> None:
        src_bucket, src_key = _split_s3(source)
        bucket, key = _split_s3(target)
        # managed copy: one CopyObject, or UploadPartCopy parts past the multipart threshold
        s3.copy({"Bucket": src_bucket, "Key": src_key}, bucket, key)
    return copy


def _record_champion(ssm: Any, settings: Settings, outcome: dict[str, Any]) -> None:
    # idempotent (Overwrite): a replayed confirmation writes the same values again
    ssm.put_parameter(Name=settings.champion_parameter, Value=outcome["model_data_url"], Type="String",
                      Overwrite=True)
    if settings.champion_package_parameter:
        ssm.put_parameter(Name=settings.champion_package_parameter, Value=outcome["model_package_arn"],
                          Type="String", Overwrite=True)


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``{"action": "promote" (default) | "confirm" | "reject", ...}`` against the real registry."""
    import boto3  # only in AWS

    action = event.get("action", "promote") if isinstance(event, dict) else "promote"
    if action not in ACTIONS:
        raise InputError(f"event.action must be one of {list(ACTIONS)}, got {action!r}")
    settings = Settings.from_env()
    sagemaker = boto3.client("sagemaker")
    if action == "confirm":
        outcome = confirm(event, sagemaker)
        if settings.champion_parameter:
            _record_champion(boto3.client("ssm"), settings, outcome)
        metrics.add_metric(name="ModelsDeployed", unit=MetricUnit.Count, value=1)
    elif action == "reject":
        outcome = reject(event, sagemaker)
        metrics.add_metric(name="ModelsRolledBack", unit=MetricUnit.Count, value=1)
    else:
        s3 = boto3.client("s3")
        if ensure_group(sagemaker, settings.model_package_group, f"{settings.model_package_group}: models of the "
                                                                  "training pipeline (champion = newest Approved)"):
            logger.info("model package group created", extra={"group": settings.model_package_group})
        outcome = promote(event, sagemaker, _s3_reader(s3), settings, _s3_copier(s3))
        metrics.add_metric(name="ModelsPassed" if outcome["approved"] else "ModelsRejected",
                           unit=MetricUnit.Count, value=1)
    logger.info(f"{action} done", extra={k: outcome[k] for k in ("run_id", "status", "model_package_arn")})
    return outcome
