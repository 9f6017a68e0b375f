"""prepare Lambda: validate the raw data of a training run and plan the run.

Two actions, both pure functions over an ``ObjectStore`` so local mode runs them on files:

* ``plan`` (default) -- ``plan_run(event, store, settings)``: check the event and its profile (a
  shipped profile's name, or the profile document itself: a user's fleet travels with the run, and
  is validated exactly as local mode validates a profile file), find the profile's raw
  objects under ``raw/<dataset>/`` (one file, its ``.gz``, or a folder of asset-partitioned parts),
  validate each against the profile (size, columns, numeric values, categorical levels; errors name
  file, row and column), pin object versions for lineage, and plan the run: run id, job names, S3
  URIs, processing arguments and the tuning job's hyperparameter ranges from the single search
  space (``training_src/search_space.py``).
* ``refit`` -- ``plan_refit(plan, best_training_job, processed_keys, settings)``: the refit
  training job's hyperparameters (the best trial's tuned values over the candidate's static ones)
  and the manifest that trains it on train + validation.

The handler adds the I/O: S3 listing/reading, writing the input manifest, the validated profile
document (``<run root>profile/profile.json``, also for a shipped name: every job of the run reads that
one copy, and lineage keeps it) and lineage JSON.
Errors in the input raise ``InputError`` (the state machine does not retry those).

The module deliberately has no ``from __future__ import annotations``: local mode loads it by file
path (importlib, possibly without registering it in ``sys.modules``), and dataclasses with string
annotations need their module registered.
"""

import codecs
import csv
import gzip
import hashlib
import json
import math
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from training_src import profiles as profiles_lib
from training_src import search_space
from training_src.candidates.base import OBJECTIVE_REGEX

logger = Logger(service="prepare")
tracer = Tracer(service="prepare")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PredMaint"), service="prepare")

EVENT_KEYS = {"action", "dataset", "profile", "subset", "run_id", "execution"}
RUN_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?$")
DATASET_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".dat")


#: where every processing job finds the run's profile: the ProcessingInput named ``profile``
#: (S3Prefix ``$.plan.s3.profile``) is mounted at /opt/ml/processing/input/profile
PROFILE_INPUT_DIR = "/opt/ml/processing/input/profile"
PROFILE_FILE = "profile.json"


class InputError(ValueError):
    """The event or the raw data is unusable; the message says what and where."""


class MissingDataError(InputError):
    """A raw object the profile needs is not there (local mode adds how to get the data)."""


@dataclass(frozen=True)
class Settings:
    """Where things live; from the Lambda environment (``Settings.from_env``) or given by local mode."""

    data_bucket: str = "local-data"
    artifacts_bucket: str = "local-artifacts"
    raw_prefix: str = "raw/"
    processed_prefix: str = "processed/"
    runs_prefix: str = "runs/"
    job_prefix: str = "pm"
    source_uri: str = ""  # s3://.../sourcedir.tar.gz for script mode
    region: str = "eu-west-1"
    max_object_bytes: int = 5 * 1024**3
    sample_bytes: int = 1024 * 1024
    #: content-check this many objects per role (every object is size-checked); a fleet split
    #: into thousands of parts is sampled rather than read in full by a 15-minute Lambda
    max_checked_objects: int = 25
    #: instance counts of the processing and training jobs (predmaint.processing/training.instance_count):
    #: a multi-instance training job shards the train channel by object, one per host at least
    processing_instances: int = 1
    training_instances: int = 1

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        return cls(
            data_bucket=env["DATA_BUCKET"],
            artifacts_bucket=env["ARTIFACTS_BUCKET"],
            job_prefix=env.get("JOB_PREFIX", "pm"),
            source_uri=env.get("SOURCE_URI", ""),
            region=env.get("AWS_REGION", "eu-west-1"),
            max_object_bytes=int(env.get("MAX_OBJECT_BYTES", cls.max_object_bytes)),
            sample_bytes=int(env.get("SAMPLE_BYTES", cls.sample_bytes)),
            max_checked_objects=int(env.get("MAX_CHECKED_OBJECTS", cls.max_checked_objects)),
            processing_instances=int(env.get("PROCESSING_INSTANCES", cls.processing_instances)),
            training_instances=int(env.get("TRAINING_INSTANCES", cls.training_instances)),
        )


@dataclass(frozen=True)
class ObjectInfo:
    """One raw object; ``key`` is relative to the raw root (``cmapss/train_FD001.txt.gz``)."""

    key: str
    size: int
    version_id: str | None = None
    etag: str | None = None


class ObjectStore(Protocol):
    """What ``plan_run`` needs from storage: list under a prefix, read the head of an object."""

    def list(self, prefix: str) -> list[ObjectInfo]: ...

    def read(self, obj: ObjectInfo, max_bytes: int) -> bytes: ...


class LocalStore:
    """Files under a local data directory (``$PREDMAINT_DATA_DIR``), for local mode and tests."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / prefix
        folder = base if prefix.endswith("/") else base.parent
        if not folder.is_dir():
            return []
        out = []
        for p in sorted(folder.rglob("*")):
            key = p.relative_to(self.root).as_posix()
            if p.is_file() and key.startswith(prefix):
                digest = hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()
                out.append(ObjectInfo(key, p.stat().st_size, None, digest))
        return out

    def read(self, obj: ObjectInfo, max_bytes: int) -> bytes:
        with open(self.root / obj.key, "rb") as fh:
            return fh.read(max_bytes)


class S3Store:
    """Objects under ``s3://bucket/<root_prefix>``; reads pin the listed version."""

    def __init__(self, s3_client: Any, bucket: str, root_prefix: str = "raw/") -> None:
        self.s3, self.bucket, self.root = s3_client, bucket, root_prefix

    def list(self, prefix: str) -> list[ObjectInfo]:
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.root + prefix):
            for item in page.get("Contents", []):
                out.append(ObjectInfo(item["Key"][len(self.root):], int(item["Size"]), None,
                                      item.get("ETag", "").strip('"') or None))
        # versions are pinned with one HEAD each (list_objects_v2 does not return them)
        pinned = []
        for obj in out:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.root + obj.key)
            version = head.get("VersionId")
            pinned.append(ObjectInfo(obj.key, obj.size, None if version in (None, "null") else version, obj.etag))
        return pinned

    def read(self, obj: ObjectInfo, max_bytes: int) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.root + obj.key}
        if obj.version_id:
            kwargs["VersionId"] = obj.version_id
        if obj.size > max_bytes:
            kwargs["Range"] = f"bytes=0-{max_bytes - 1}"
        return self.s3.get_object(**kwargs)["Body"].read()


# --------------------------------------------------------------------------------------------
# event validation
# --------------------------------------------------------------------------------------------

def parse_event(event: Any) -> dict[str, Any]:
    """Check a ``plan`` event and return it normalised (``dataset``, ``profile``, ``subset``, ...)."""
    if not isinstance(event, dict):
        raise InputError(f"event must be a JSON object, got {type(event).__name__}")
    unknown = sorted(set(event) - EVENT_KEYS)
    if unknown:
        raise InputError(f"event has unknown field(s) {unknown}; allowed: {sorted(EVENT_KEYS)}")
    if not isinstance(event.get("dataset"), str) or not event["dataset"]:
        raise InputError(f"event.dataset is required (a non-empty string), got {event.get('dataset')!r}")
    profile = event.get("profile")
    if profile is None or profile == "":
        raise InputError("event.profile is required: a shipped profile's name or the profile document (an object)")
    if not isinstance(profile, str | dict):
        raise InputError(f"event.profile must be a shipped profile's name or the profile document (an object), "
                         f"got {type(profile).__name__}")
    if isinstance(profile, str) and profiles_lib.is_profile_path(profile):
        raise InputError(f"event.profile {profile!r} looks like a file path; files are not readable in AWS: "
                         "send the profile document itself (`predmaint start-training --profile FILE` does)")
    if not DATASET_RE.match(event["dataset"]):
        raise InputError(f"event.dataset {event['dataset']!r} must be a folder name under raw/ "
                         "(letters, digits, '.', '_', '-')")
    subset = event.get("subset")
    if subset is not None and (not isinstance(subset, str) or not subset):
        raise InputError(f"event.subset must be a non-empty string or null, got {subset!r}")
    run_id = event.get("run_id")
    if run_id is not None and (not isinstance(run_id, str) or not RUN_ID_RE.match(run_id)):
        raise InputError(f"event.run_id {run_id!r} must be 1-20 lowercase letters, digits or dashes")
    execution = event.get("execution")
    if execution is not None and (not isinstance(execution, dict) or not isinstance(execution.get("name"), str)):
        raise InputError("event.execution must be {\"name\": ..., \"start_time\": ...} (the state machine's context)")
    return {"dataset": event["dataset"], "profile": event["profile"], "subset": subset, "run_id": run_id,
            "execution": execution}


def make_run_id(execution: dict[str, Any] | None, now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxx``: from the execution's start time and name, so a retried Lambda
    plans the same run (same job names) instead of a second one."""
    if execution:
        start = str(execution.get("start_time") or "")
        try:
            when = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(f"event.execution.start_time {start!r} is not an ISO-8601 timestamp") from exc
        seed = execution["name"]
    else:
        when = now or datetime.now(UTC)
        seed = when.isoformat()
    return f"{when:%Y%m%d-%H%M%S}-{hashlib.sha256(seed.encode()).hexdigest()[:4]}"


# --------------------------------------------------------------------------------------------
# raw data validation
# --------------------------------------------------------------------------------------------

def resolve_objects(profile: profiles_lib.Profile, dataset: str, store: ObjectStore) -> dict[str, list[ObjectInfo]]:
    """Map each file role of the profile to its raw objects under ``<dataset>/``.

    A role's file ``cmapss/train_FD001.txt`` matches ``<dataset>/train_FD001.txt``, its ``.gz``, or
    every object in the folder ``<dataset>/train_FD001/`` (the fleet partitioned by asset into parts;
    names starting with ``_`` or ``.`` are markers and skipped).
    """
    listing = store.list(f"{dataset}/")
    by_key = {o.key: o for o in listing}
    out: dict[str, list[ObjectInfo]] = {}
    for role in sorted(profile.files):
        rel = profile.file(role) or ""
        name = rel.split("/", 1)[1] if "/" in rel else rel
        key = f"{dataset}/{name}"
        stem = key
        for suffix in _TEXT_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
        found = [by_key[k] for k in (key, key + ".gz") if k in by_key]
        if not found:
            found = [o for o in listing if o.key.startswith(stem + "/")
                     and not o.key.rsplit("/", 1)[-1].startswith(("_", "."))]
        if not found:
            raise MissingDataError(f"dataset {dataset!r}: no raw object for {role!r}: expected {key}, {key}.gz or "
                             f"parts under {stem}/ (found {sorted(by_key)[:10] or 'nothing'} under {dataset}/)")
        out[role] = sorted(found, key=lambda o: o.key)
    return out


def _text_lines(obj: ObjectInfo, head: bytes) -> tuple[list[str], bool]:
    """Decode the head of an object into lines; ``complete`` is False when only a sample was read."""
    complete = len(head) >= obj.size
    if obj.key.endswith(".gz"):
        try:
            if complete:
                raw = gzip.decompress(head)
            else:
                raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 64 * len(head))
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{obj.key}: not a valid gzip file ({exc})") from exc
    else:
        raw = head
    text = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    try:
        decoded = text.decode(raw, final=complete)
    except UnicodeDecodeError as exc:
        raise InputError(f"{obj.key}: not UTF-8 text at byte {exc.start}") from exc
    lines = decoded.splitlines()
    if not complete and lines and not decoded.endswith("\n"):
        lines = lines[:-1]  # a sample ends mid-line
    return lines, complete


def _rows(profile: profiles_lib.Profile, lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    if profile.file_format == "whitespace":
        for i, line in enumerate(lines, start=1):
            if line.strip():
                yield i, line.split()
    else:
        for i, row in enumerate(csv.reader(lines), start=1):
            if row and any(cell.strip() for cell in row):
                yield i, [cell.strip() for cell in row]


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def validate_object(profile: profiles_lib.Profile, role: str, obj: ObjectInfo, head: bytes) -> dict[str, Any]:
    """Validate one raw object (or the head of a large one) against the profile.

    Returns a summary (rows checked, columns); raises ``InputError`` naming file, row and column.
    """
    if obj.size == 0 or not head:
        raise InputError(f"{obj.key}: empty object (0 bytes)")
    lines, complete = _text_lines(obj, head)
    rows = iter(_rows(profile, lines))
    if role == "test_rul":  # one true RUL value per test asset, no header
        columns: list[str] = ["rul"]
        required: tuple[str, ...] = ("rul",)
    elif profile.header:
        first = next(rows, None)
        if first is None:
            raise InputError(f"{obj.key}: empty object (no header row)")
        columns = [profile.rename.get(c, c) for c in first[1]]
        required = profile.required_columns
    else:
        columns = list(profile.columns or ())
        required = profile.required_columns
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"{obj.key}: missing column(s) {missing}; found columns {columns}")
    index = {c: columns.index(c) for c in required}
    numeric = [c for c in required if c not in profile.categorical_columns]
    # The documented missing-value policy (docs/architecture.md, training_src/features/checks.py): in time series, an isolated
    # gap in a setting or sensor is filled by preprocessing, which also rejects longer gaps (this gate
    # only samples a file, so it cannot see a gap's length). Ids, times, labels and row-wise data: no gaps.
    series = role != "test_rul" and bool(profile.time_column and profile.id_column)
    gap_ok = set(profile.setting_columns) | set(profile.sensor_columns) if series else set()
    id_i, time_i = (index.get(profile.id_column), index.get(profile.time_column)) if series else (None, None)
    last: tuple[str, float] | None = None
    checked = 0
    for line_no, values in rows:
        if len(values) != len(columns):
            raise InputError(f"{obj.key} row {line_no}: expected {len(columns)} values, found {len(values)}")
        for col in numeric:
            value = values[index[col]]
            number = _number(value)
            if col in gap_ok and (value.lower() in ("", "nan", "na") or (number is not None and math.isnan(number))):
                continue
            if number is None or not math.isfinite(number):
                raise InputError(f"{obj.key} row {line_no} column {col!r}: non-numeric value {value!r}")
        if id_i is not None and time_i is not None:  # each asset's times strictly increase in file order
            asset, t = values[id_i], float(values[time_i])
            if last is not None and last[0] == asset and t <= last[1]:
                what = "duplicate" if t == last[1] else "non-increasing"
                raise InputError(f"{obj.key} row {line_no} column {profile.time_column!r}: {what} "
                                 f"{profile.time_column} {values[time_i]} for asset {asset} (previous {last[1]:g})")
            last = (asset, t)
        for col, levels in profile.categorical_columns.items():
            if col in index and values[index[col]] not in levels:
                raise InputError(f"{obj.key} row {line_no} column {col!r}: unknown level {values[index[col]]!r}; "
                                 f"the profile allows {list(levels)}")
        checked += 1
    if checked == 0:
        raise InputError(f"{obj.key}: no data rows" + ("" if complete else " in the first sample"))
    return {"key": obj.key, "rows_checked": checked, "fully_checked": complete, "columns": len(columns)}


# --------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------

def _hp(value: Any) -> str:
    """A hyperparameter value the way the SageMaker SDK passes them to framework containers."""
    return search_space.encode(value)


def load_event_profile(ref: str | dict[str, Any], subset: str | None) -> profiles_lib.Profile:
    """The run's profile from ``event.profile``: a shipped profile's name, or the document itself,
    validated by the same ``profiles.parse_profile`` as a local profile file (every key, every level)."""
    try:
        if isinstance(ref, dict):
            return profiles_lib.parse_profile(ref, subset, source="event.profile")
        return profiles_lib.load_profile(ref, subset)
    except profiles_lib.ProfileError as exc:
        raise InputError(str(exc)) from exc


def plan_run(event: dict[str, Any], store: ObjectStore, settings: Settings | None = None) -> dict[str, Any]:
    """Validate the event and the raw objects; return the run plan the state machine follows.

    ``store`` lists/reads the raw root (``LocalStore(data_dir)`` or ``S3Store(s3, bucket)``).
    The plan has ``run_id``, ``profile`` (the profile's name), ``jobs`` (names), ``s3`` (URIs; ``profile``
    is the prefix that holds ``profile.json``), ``inputs`` (pinned objects, the processing manifest and
    ``profile``: the validated profile document, which the caller writes and removes), ``arguments``
    (the processing scripts read the profile from ``PROFILE_INPUT_DIR``) and ``tuning`` (per-candidate
    ranges and static hyperparameters, objective and metric definitions).
    """
    settings = settings or Settings()
    ev = parse_event(event)
    profile = load_event_profile(ev["profile"], ev["subset"])

    objects = resolve_objects(profile, ev["dataset"], store)
    checks = []
    for role, objs in objects.items():
        for i, obj in enumerate(objs):
            if obj.size > settings.max_object_bytes:
                raise InputError(f"{obj.key}: {obj.size / 2**20:.0f} MiB exceeds the {settings.max_object_bytes / 2**20:.0f}"
                                 " MiB limit; partition the fleet by asset into several objects")
            if obj.size == 0:
                raise InputError(f"{obj.key}: empty object (0 bytes)")
            if i < settings.max_checked_objects:
                checks.append(validate_object(profile, role, obj, store.read(obj, settings.sample_bytes)))

    hosts = settings.training_instances
    train_objects = len(objects.get("train", []))
    if hosts > 1 and settings.processing_instances > 1 and train_objects < hosts:
        # sharded preprocessing writes one train part per raw object; each training host needs one
        raise InputError(f"training runs on {hosts} instances, each reading its own train part, but the "
                         f"fleet's train data is {train_objects} object(s); partition it by asset into at "
                         f"least {hosts} objects (or lower predmaint.training.instance_count)")

    run_id = ev["run_id"] or make_run_id(ev["execution"])
    p = settings.job_prefix
    data = f"s3://{settings.data_bucket}/"
    run_root = f"s3://{settings.artifacts_bucket}/{settings.runs_prefix}{run_id}/"
    processed = f"{data}{settings.processed_prefix}{run_id}/"
    # one unambiguous source for every processing job: the profile document this plan validated
    common = ["--profile", f"{PROFILE_INPUT_DIR}/{PROFILE_FILE}"] + (["--subset", profile.subset] if profile.subset else [])
    metric = profile.objective_metric
    definitions = {}
    for algorithm in search_space.tuned_algorithms(hosts):  # the state machine's definitions, by the same rule
        static = dict(search_space.static_hyperparameters(algorithm, profile))
        static.update({"sagemaker_program": "train.py", "sagemaker_submit_directory": settings.source_uri,
                       "sagemaker_region": settings.region, "sagemaker_container_log_level": 20})
        definitions[algorithm] = {
            "ranges": search_space.sagemaker_parameter_ranges(algorithm),
            "static": {k: _hp(v) for k, v in static.items()},
        }
    raw_keys = [o.key for objs in objects.values() for o in objs]
    return {
        "run_id": run_id,
        "dataset": ev["dataset"],
        "profile": profile.name,
        "subset": profile.subset,
        "task": profile.task,
        "jobs": {
            "preprocess": f"{p}-prep-{run_id}",
            # sharded preprocessing (predmaint.processing.instance_count > 1): fit once, transform shards
            "fit_features": f"{p}-prepfit-{run_id}",
            "transform_features": f"{p}-prepxf-{run_id}",
            "tuning": f"{p}-hpo-{run_id}",
            "refit": f"{p}-fit-{run_id}",
            "evaluate": f"{p}-eval-{run_id}",
            # the stream's rebuild after a promotion (predmaint.stream.enabled; docs/streaming.md)
            "stream_rebuild": f"{p}-rebuild-{run_id}",
            "model": f"{p}-{run_id}",
            "endpoint_config": f"{p}-{run_id}",
        },
        "s3": {
            "raw_root": f"{data}{settings.raw_prefix}",
            "processed": processed,
            "train": f"{processed}train/",
            "validation": f"{processed}validation/",
            "test": f"{processed}test/",
            "spec": f"{processed}spec/",
            "baseline": f"{processed}baseline/",
            "raw_manifest": f"{run_root}manifests/raw.json",
            "profile": f"{run_root}profile/",
            "tuning_output": f"{run_root}tuning/",
            "checkpoints": f"{run_root}checkpoints/",
            "model_output": f"{run_root}model/",
            "evaluation": f"{run_root}evaluation/",
            "evaluation_report": f"{run_root}evaluation/evaluation.json",
            "lineage": f"{run_root}lineage.json",
        },
        "inputs": {
            "objects": [{"role": role, "key": o.key, "size": o.size, "version_id": o.version_id, "etag": o.etag}
                        for role, objs in objects.items() for o in objs],
            "checks": checks,
            # SageMaker manifest: a prefix, then keys relative to it (only the validated objects)
            "manifest": [{"prefix": f"{data}{settings.raw_prefix}"}, *raw_keys],
            # the validated profile document (written to s3.profile + profile.json, then removed)
            "profile": profile.to_dict(),
        },
        # command lines of the processing scripts (evaluate.py takes its paths only)
        "arguments": {"preprocess": [*common, *(["--train-parts", str(hosts)] if hosts > 1 else [])],
                      "fit_features": [*common, "--stage", "fit"],
                      "transform_features": [*common, "--stage", "transform"],
                      "evaluate": ["--output-dir", "/opt/ml/processing/output/evaluation"]},
        "tuning": {
            "objective": {"metric": metric, "type": profile.objective_direction},
            # the built-in XGBoost algorithm's own definition of the objective, which the tuning service
            # applies to the XGBoost image: documentation and the tests' reference, never sent (a
            # request with MetricDefinitions is refused for a built-in algorithm; docs/aws.md)
            "metric_definitions": [{"Name": metric, "Regex": OBJECTIVE_REGEX.format(metric=metric.replace(":", "-", 1))}],
            "definitions": definitions,
        },
    }


def plan_refit(plan: dict[str, Any], best_training_job: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters of the refit training job: the best trial's tuned values over its candidate's
    static ones, plus ``fit_on=train+validation`` (train.py then fits on both channels).

    ``best_training_job`` is the tuning job's ``BestTrainingJob`` (``TrainingJobDefinitionName`` is
    the winning candidate algorithm; ``TunedHyperParameters`` its values).
    """
    if not isinstance(plan, dict) or not isinstance(plan.get("tuning"), dict):
        raise InputError("refit event needs the run's plan (from the plan action)")
    if not isinstance(best_training_job, dict):
        raise InputError("best_training_job must be the tuning job's BestTrainingJob object")
    algorithm = best_training_job.get("TrainingJobDefinitionName")
    definitions = plan["tuning"].get("definitions", {})
    if algorithm not in definitions:
        raise InputError(f"BestTrainingJob.TrainingJobDefinitionName {algorithm!r} is not a planned candidate "
                         f"({sorted(definitions)})")
    tuned = best_training_job.get("TunedHyperParameters")
    if not isinstance(tuned, dict) or not tuned:
        raise InputError("BestTrainingJob.TunedHyperParameters is missing: the tuning job found no best trial")
    hyperparameters = {**definitions[algorithm]["static"], **{k: str(v) for k, v in tuned.items()},
                       "fit_on": _hp("train+validation")}
    return {"algorithm": algorithm, "hyperparameters": hyperparameters,
            "best_objective": best_training_job.get("FinalHyperParameterTuningJobObjectiveMetric")}


# --------------------------------------------------------------------------------------------
# Lambda entry point
# --------------------------------------------------------------------------------------------

def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, indent=1).encode()


def document_sha256(doc: Any) -> str:
    """SHA-256 of a JSON document as ``_put_json`` writes it (lineage: which profile a run used)."""
    return hashlib.sha256(_json_bytes(doc)).hexdigest()


def _put_json(s3: Any, uri: str, doc: Any) -> None:
    bucket, key = _split_s3(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=_json_bytes(doc), ContentType="application/json")


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``{"action": "plan", dataset, profile (a name or the document), subset, execution}`` -> the plan
    (and ``<run root>profile/profile.json``, ``manifests/raw.json``, ``lineage.json`` in S3);
    ``{"action": "refit", "plan": ..., "best_training_job": ...}`` -> the refit settings."""
    import boto3  # only in AWS: local mode calls the pure functions

    settings = Settings.from_env()
    s3 = boto3.client("s3")
    action = event.get("action", "plan") if isinstance(event, dict) else "plan"
    if action == "refit":
        refit = plan_refit(event.get("plan"), event.get("best_training_job"))
        metrics.add_metric(name="RefitsPlanned", unit=MetricUnit.Count, value=1)
        logger.info("refit planned", extra={"algorithm": refit["algorithm"], "run_id": event["plan"].get("run_id")})
        return refit
    if action != "plan":
        raise InputError(f"event.action must be 'plan' or 'refit', got {action!r}")
    event = {k: v for k, v in event.items() if k != "action"}
    plan = plan_run(event, S3Store(s3, settings.data_bucket, settings.raw_prefix), settings)
    _put_json(s3, plan["s3"]["raw_manifest"], plan["inputs"].pop("manifest"))
    profile_uri = plan["s3"]["profile"] + PROFILE_FILE
    profile_doc = plan["inputs"].pop("profile")
    _put_json(s3, profile_uri, profile_doc)
    _put_json(s3, plan["s3"]["lineage"], {"run_id": plan["run_id"], "objects": plan["inputs"]["objects"],
                                          "checks": plan["inputs"]["checks"], "event": event,
                                          "profile": {"uri": profile_uri, "sha256": document_sha256(profile_doc)}})
    # keep the execution state small (256 KB limit): lineage.json has the pinned objects and checks
    plan["inputs"].pop("checks")
    plan["inputs"]["object_count"] = len(plan["inputs"].pop("objects"))
    metrics.add_metric(name="RunsPlanned", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="RawObjects", unit=MetricUnit.Count, value=plan["inputs"]["object_count"])
    logger.info("run planned", extra={"run_id": plan["run_id"], "objects": plan["inputs"]["object_count"]})
    return plan
