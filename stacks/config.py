"""Typed deployment configuration, hydrated from the ``predmaint`` key of the CDK context.

``cdk.json`` holds the defaults. Any leaf can be overridden on the command line with a dotted key,
for example ``cdk synth -c predmaint.endpoint.max_capacity=8 -c predmaint.training.use_spot=false``;
values are parsed as JSON when they parse (numbers, booleans, null) and taken as strings otherwise.
Everything is validated at synth with errors that name the offending key (``ConfigError``).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

# the drift rule's defaults live with the rule (the container's drift.py uses them without this module)
from training_src.drift import ALPHA, PSI_THRESHOLD
from training_src.stream.decisions import DecisionError, Rule, make_rule

CONTEXT_KEY = "predmaint"
INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.(?:nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal)$")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")
SCHEDULE_RE = re.compile(r"^(?:rate\(\d+ (?:minute|minutes|hour|hours|day|days)\)|cron\([^)]+\))$")


class ConfigError(ValueError):
    """The deployment configuration is invalid; the message names the key and what is expected."""


@dataclass(frozen=True)
class DataConfig:
    """Buckets: retention on stack deletion and lifecycle of old artifacts."""

    retain_data: bool = True
    artifact_expiry_days: int = 365
    noncurrent_version_expiry_days: int = 90
    access_log_expiry_days: int = 365
    data_capture_expiry_days: int = 90


@dataclass(frozen=True)
class ComputeConfig:
    """Instance type/count, volume and run-time limit of one kind of SageMaker job."""

    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_minutes: int = 120


@dataclass(frozen=True)
class ProcessingConfig(ComputeConfig):
    """Preprocessing. With ``instance_count`` > 1 the pipeline runs FitFeatures (one instance: split
    assignment + feature spec) then TransformFeatures (``instance_count`` instances, raw objects
    ``ShardedByS3Key``); ``fit_sample_objects`` > 0 fits the spec on that many evenly spaced raw
    objects instead of all of them (the split still sees every asset); 0 fits on all of them up to
    ``preprocess.FIT_MAX_ROWS`` estimated rows and on a sample of about that many above."""

    fit_sample_objects: int = 0


@dataclass(frozen=True)
class TrainingConfig(ComputeConfig):
    """Training jobs (tuning trials and the refit); spot capacity with a max wait."""

    use_spot: bool = True
    max_wait_minutes: int = 240


@dataclass(frozen=True)
class TuningConfig:
    """Hyperparameter tuning budget (across all candidate algorithms together)."""

    max_jobs: int = 20
    max_parallel_jobs: int = 2
    strategy: str = "Bayesian"
    early_stopping: str = "Auto"


@dataclass(frozen=True)
class EndpointConfig:
    """Real-time endpoint, its autoscaling and its blue/green canary deployment."""

    name: str = "predmaint"
    variant_name: str = "AllTraffic"
    instance_type: str = "ml.m5.large"
    initial_instance_count: int = 1
    min_capacity: int = 1
    max_capacity: int = 4
    target_invocations_per_instance: float = 300.0
    scale_in_cooldown_seconds: int = 300
    scale_out_cooldown_seconds: int = 60
    data_capture_percent: int = 100
    canary_percent: int = 10
    canary_wait_seconds: int = 300
    termination_wait_seconds: int = 300
    max_instances_per_request: int = 100


@dataclass(frozen=True)
class AlarmConfig:
    """Endpoint alarms (also the auto-rollback alarms of a blue/green deployment)."""

    errors_5xx_threshold: int = 5
    model_latency_p99_ms: int = 500
    evaluation_periods: int = 3
    period_seconds: int = 60


@dataclass(frozen=True)
class TriggerConfig:
    """Ways an execution starts besides the console and ``predmaint start-training``."""

    schedule: str | None = None  # e.g. "rate(7 days)" or "cron(0 3 ? * MON *)"
    on_raw_upload: bool = False
    ready_marker: str = "_READY"  # uploading raw/<dataset>/_READY starts a run


@dataclass(frozen=True)
class PipelineConfig:
    """State machine limits and the observability of its Lambdas."""

    timeout_hours: int = 24
    log_retention_days: int = 90
    max_raw_object_mb: int = 5120
    validation_sample_kb: int = 1024


#: where the stream's archive and model info live in the artifacts bucket (docs/streaming.md): the
#: stream construct, the rebuild job's role and its pipeline step all address them
STREAM_ARCHIVE_PREFIX = "stream/archive/"
#: the serving model's info: the rebuild job (a processing output of the training pipeline) writes it
STREAM_MODEL_INFO_PREFIX = "stream/model-info/"
STREAM_MODEL_INFO_KEY = STREAM_MODEL_INFO_PREFIX + "model-info.json"
#: the Monitoring stack's output holding the s3:// URL of the fleet page the quality check writes
#: (stacks/quality_monitor.py; ``predmaint fleet --aws`` reads it)
FLEET_PAGE_OUTPUT = "FleetPageUrl"
#: failure_probability's horizon (cycles) in the stream's answers
STREAM_HORIZON_CYCLES = 30


@dataclass(frozen=True)
class StreamConfig:
    """The stateful scoring path (stacks/streaming.py, docs/streaming.md): Kinesis stream, score
    Lambda, state table. Off by default."""

    enabled: bool = False


@dataclass(frozen=True)
class DecisionsConfig:
    """The maintenance decision rule (training_src/stream/decisions.py, docs/decisions.md): horizon H in
    the profile's time unit, either ``threshold`` or ``cost_failure`` and ``cost_maintenance``
    (threshold = maintenance / failure), optional ``min_lead`` on ``rul_lower``. Unset values take
    the profile task's defaults (``decisions.TASK_DEFAULTS``)."""

    horizon: float | None = None
    threshold: float | None = None
    cost_failure: float | None = None
    cost_maintenance: float | None = None
    min_lead: float | None = None
    #: with the stream enabled, an EventBridge rule sends the risk events to the notifications topic
    notify: bool = False


#: the fields of ``DecisionsConfig`` that make up the rule (``make_rule``'s arguments)
RULE_FIELDS = ("horizon", "threshold", "cost_failure", "cost_maintenance", "min_lead")


@dataclass(frozen=True)
class QualityConfig:
    """The scheduled live-quality check (stacks/quality_monitor.py, docs/decisions.md): only with the stream
    enabled. Alarms when the latest model version's 80 % interval ``coverage`` leaves
    [``coverage_min``, ``coverage_max``] or its ``rmse_capped`` exceeds ``max_rmse`` (null: no RMSE alarm);
    ``retrain_on_alarm`` starts the training state machine on any of them, as drift's rule does.
    ``fleet_training_data``: the job also writes every failed life's history to the data bucket's ``raw/``
    in the profile's raw layout (docs/decisions.md, "Failures become training data"); a shipped
    run-to-failure profile only (the job loads it by name)."""

    enabled: bool = True
    schedule: str = "rate(1 day)"
    coverage_min: float = 0.7
    coverage_max: float = 0.9
    max_rmse: float | None = 25.0
    retrain_on_alarm: bool = False
    instance_type: str = "ml.m5.large"
    max_runtime_minutes: int = 60
    fleet_training_data: bool = False


@dataclass(frozen=True)
class VpcConfig:
    """Optional VPC mode: SageMaker jobs, models and the Lambdas in private isolated subnets that reach
    AWS only through VPC endpoints (no NAT, no internet gateway). Off by default."""

    enabled: bool = False
    cidr: str = "10.42.0.0/16"
    max_azs: int = 2


@dataclass(frozen=True)
class DriftConfig:
    """Scheduled drift check of the endpoint's captured traffic (stacks/drift_monitor.py): how often,
    over how many hours of capture, the decision rule (training_src/drift.py) and whether a drift
    alarm starts the training state machine. ``psi_threshold`` and ``alpha`` default to the rule's own
    (training_src/drift.py ``PSI_THRESHOLD``, ``ALPHA``); set them in cdk.json to deploy others."""

    enabled: bool = True
    schedule: str = "rate(1 day)"
    window_hours: int = 24
    psi_threshold: float = PSI_THRESHOLD
    alpha: float = ALPHA
    retrain_on_drift: bool = False
    instance_type: str = "ml.m5.large"
    max_runtime_minutes: int = 60


@dataclass(frozen=True)
class AppConfig:
    """The whole deployment. ``from_context`` is the only way the app builds one."""

    project: str = "predmaint"
    region: str = "eu-west-1"
    job_prefix: str = "pm"
    dataset: str = "cmapss"
    profile: str = "cmapss"
    subset: str | None = "FD001"
    notification_email: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    alarms: AlarmConfig = field(default_factory=AlarmConfig)
    promotion: dict[str, dict[str, float | None]] = field(default_factory=dict)
    triggers: TriggerConfig = field(default_factory=TriggerConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    vpc: VpcConfig = field(default_factory=VpcConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    decisions: DecisionsConfig = field(default_factory=DecisionsConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    # --- names shared by several stacks (one place, so they can never disagree) ---
    def bucket_name(self, kind: str, account: str) -> str:
        """Deterministic bucket name (``data``, ``artifacts``, ``logs``): other stacks and the docs
        address buckets by name, so no cross-stack export is needed and IAM ARNs are readable."""
        return f"{self.project}-{kind}-{account}-{self.region}"

    @property
    def champion_parameter(self) -> str:
        """SSM parameter the promote Lambda writes and the endpoint stack reads (model data URL)."""
        return f"/{self.project}/champion/model-data-url"

    @property
    def champion_package_parameter(self) -> str:
        return f"/{self.project}/champion/model-package-arn"

    @property
    def model_package_group(self) -> str:
        return f"{self.project}-{self.profile}"

    @property
    def stream_table_name(self) -> str:
        """The stream's state table (stacks/streaming.py): the rebuild job's role and request name it."""
        return f"{self.project}-assets"

    def stack_name(self, kind: str) -> str:
        """The CloudFormation stack of one part (``Data``, ``Training``, ``Endpoint``, ``Monitoring``,
        ``Network``): ``Predmaint-Monitoring`` for the project ``predmaint``."""
        return "".join(part.capitalize() for part in self.project.split("-")) + f"-{kind}"

    @property
    def state_machine_name(self) -> str:
        return f"{self.project}-training"

    @property
    def alarm_names(self) -> tuple[str, str]:
        """(5XX alarm, latency alarm): created by the endpoint stack, used by UpdateEndpoint rollback."""
        return (f"{self.endpoint.name}-5xx-errors", f"{self.endpoint.name}-model-latency-p99")

    @property
    def retrain_input(self) -> dict[str, Any]:
        """The training state machine's input that automatic retraining sends (schedule, raw upload, drift)."""
        return {"dataset": self.dataset, "profile": self.profile, "subset": self.subset}

    @classmethod
    def from_context(cls, context: dict[str, Any]) -> AppConfig:
        """Build and validate the config from the app's whole context (``node.get_all_context()``)."""
        doc = copy.deepcopy(context.get(CONTEXT_KEY) or {})
        if not isinstance(doc, dict):
            raise ConfigError(f"context {CONTEXT_KEY!r} must be an object")
        for key, raw in sorted(context.items()):
            if key.startswith(CONTEXT_KEY + "."):
                _set_dotted(doc, key[len(CONTEXT_KEY) + 1:].split("."), _parse_value(raw))
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AppConfig:
        """Build from a plain dict (unknown keys are errors, so typos never pass silently)."""
        cfg = _build(cls, doc, CONTEXT_KEY)
        cfg.validate()
        return cfg

    def thresholds_for(self, task: str) -> dict[str, float | None]:
        """Promotion thresholds (``promotion.Thresholds`` kwargs) for a task."""
        return dict(self.promotion.get(task) or {})

    def decision_rule(self) -> Rule:
        """The fleet's decision rule: ``decisions`` over the profile task's defaults."""
        from training_src.profiles import load_profile

        d = self.decisions
        for name in RULE_FIELDS:
            v = getattr(d, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ConfigError(f"predmaint.decisions.{name}: must be a number or null, got {v!r}")
        try:
            return make_rule(load_profile(self.profile, self.subset).task, horizon=d.horizon, threshold=d.threshold,
                             cost_failure=d.cost_failure, cost_maintenance=d.cost_maintenance,
                             min_lead=d.min_lead)
        except DecisionError as exc:
            raise ConfigError(str(exc)) from None

    def _check_fleet_training_data(self) -> None:
        """``quality.fleet_training_data`` needs the check on and a shipped run-to-failure profile: the job
        loads the profile by name from its code (a profile file of the deploying machine is not there)."""
        from training_src.profiles import is_profile_path, load_profile
        from training_src.stream import failures

        where = "predmaint.quality.fleet_training_data"
        if not (self.stream.enabled and self.quality.enabled):
            raise ConfigError(f"{where} needs predmaint.stream.enabled and predmaint.quality.enabled "
                              "(the quality job writes the histories)")
        if is_profile_path(self.profile):
            raise ConfigError(f"{where}: the profile must be a shipped one (the job loads it by name), "
                              f"not the file {self.profile!r}")
        try:
            failures.check_profile(load_profile(self.profile, self.subset))
        except failures.FailureError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first inconsistent setting."""
        from training_src.profiles import ProfileError, load_profile  # the profile rules live there

        if not NAME_RE.match(self.project):
            raise ConfigError(f"predmaint.project: {self.project!r} must be 3-20 lowercase letters, digits, dashes (it prefixes bucket names)")
        if not re.match(r"^[a-z]{1,5}$", self.job_prefix):
            raise ConfigError(f"predmaint.job_prefix: {self.job_prefix!r} must be 1-5 lowercase letters "
                              "(SageMaker tuning job names are limited to 32 characters)")
        if not re.match(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", self.region):
            raise ConfigError(f"predmaint.region: {self.region!r} is not an AWS region name like eu-west-1")
        if not re.match(r"^[A-Za-z0-9._-]{1,100}$", self.dataset):
            raise ConfigError(f"predmaint.dataset: {self.dataset!r} must be a folder name under raw/")
        try:
            profile = load_profile(self.profile, self.subset)
        except ProfileError as exc:
            raise ConfigError(f"predmaint.profile/subset: {exc}") from exc
        for where, compute in (("processing", self.processing), ("training", self.training)):
            _check_instance(f"predmaint.{where}.instance_type", compute.instance_type)
            _check_range(f"predmaint.{where}.instance_count", compute.instance_count, 1, 100)
            _check_range(f"predmaint.{where}.volume_size_gb", compute.volume_size_gb, 1, 16384)
            _check_range(f"predmaint.{where}.max_runtime_minutes", compute.max_runtime_minutes, 1, 5 * 24 * 60)
        _check_range("predmaint.processing.fit_sample_objects", self.processing.fit_sample_objects, 0, 10**6)
        if not isinstance(self.processing.fit_sample_objects, int):
            raise ConfigError("predmaint.processing.fit_sample_objects: must be a whole number of raw objects")
        if self.training.use_spot and self.training.max_wait_minutes < self.training.max_runtime_minutes:
            raise ConfigError("predmaint.training.max_wait_minutes must be >= max_runtime_minutes with spot "
                              f"({self.training.max_wait_minutes} < {self.training.max_runtime_minutes})")
        t = self.tuning
        _check_range("predmaint.tuning.max_jobs", t.max_jobs, 1, 500)
        _check_range("predmaint.tuning.max_parallel_jobs", t.max_parallel_jobs, 1, 100)
        if t.max_parallel_jobs > t.max_jobs:
            raise ConfigError(f"predmaint.tuning.max_parallel_jobs ({t.max_parallel_jobs}) > max_jobs ({t.max_jobs})")
        if t.strategy not in ("Bayesian", "Random", "Hyperband", "Grid"):
            raise ConfigError(f"predmaint.tuning.strategy: {t.strategy!r} is not a SageMaker tuning strategy")
        if t.early_stopping not in ("Auto", "Off"):
            raise ConfigError(f"predmaint.tuning.early_stopping must be Auto or Off, got {t.early_stopping!r}")
        e = self.endpoint
        if not re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", e.name):
            raise ConfigError(f"predmaint.endpoint.name: {e.name!r} is not a valid SageMaker endpoint name")
        _check_instance("predmaint.endpoint.instance_type", e.instance_type)
        _check_range("predmaint.endpoint.min_capacity", e.min_capacity, 1, 1000)
        _check_range("predmaint.endpoint.max_capacity", e.max_capacity, 1, 1000)
        if e.min_capacity > e.max_capacity:
            raise ConfigError(f"predmaint.endpoint: min_capacity ({e.min_capacity}) > max_capacity ({e.max_capacity})")
        if not e.min_capacity <= e.initial_instance_count <= e.max_capacity:
            raise ConfigError("predmaint.endpoint.initial_instance_count must lie within min_capacity..max_capacity")
        if e.target_invocations_per_instance <= 0:
            raise ConfigError("predmaint.endpoint.target_invocations_per_instance must be > 0")
        _check_range("predmaint.endpoint.scale_in_cooldown_seconds", e.scale_in_cooldown_seconds, 0, 86400)
        _check_range("predmaint.endpoint.scale_out_cooldown_seconds", e.scale_out_cooldown_seconds, 0, 86400)
        _check_range("predmaint.endpoint.data_capture_percent", e.data_capture_percent, 0, 100)
        _check_range("predmaint.endpoint.canary_percent", e.canary_percent, 1, 50)
        _check_range("predmaint.endpoint.canary_wait_seconds", e.canary_wait_seconds, 0, 3600)
        _check_range("predmaint.endpoint.termination_wait_seconds", e.termination_wait_seconds, 0, 3600)
        a = self.alarms
        _check_range("predmaint.alarms.errors_5xx_threshold", a.errors_5xx_threshold, 1, 10**6)
        _check_range("predmaint.alarms.model_latency_p99_ms", a.model_latency_p99_ms, 1, 60_000)
        _check_range("predmaint.alarms.evaluation_periods", a.evaluation_periods, 1, 100)
        if a.period_seconds not in (10, 30) and a.period_seconds % 60:
            raise ConfigError("predmaint.alarms.period_seconds must be 10, 30 or a multiple of 60")
        if self.triggers.schedule is not None and not SCHEDULE_RE.match(self.triggers.schedule):
            raise ConfigError(f"predmaint.triggers.schedule: {self.triggers.schedule!r} is not rate(...) or cron(...)")
        if self.notification_email is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", self.notification_email):
            raise ConfigError(f"predmaint.notification_email: {self.notification_email!r} is not an e-mail address")
        known = {"max_rmse", "max_nasa_score", "min_pr_auc", "min_f1", "min_improvement_over_baseline_pct"}
        for task, gates in self.promotion.items():
            if task not in ("rul_regression", "failure_classification") or not isinstance(gates, dict):
                raise ConfigError(f"predmaint.promotion.{task}: keys are task names with threshold objects")
            for k, v in gates.items():
                if k not in known:
                    raise ConfigError(f"predmaint.promotion.{task}.{k}: unknown threshold; known: {sorted(known)}")
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                    raise ConfigError(f"predmaint.promotion.{task}.{k}: must be a number or null, got {v!r}")
        if profile.task not in self.promotion:
            raise ConfigError(f"predmaint.promotion.{profile.task}: thresholds for the profile's task are required")
        p = self.pipeline
        _check_range("predmaint.pipeline.timeout_hours", p.timeout_hours, 1, 24 * 365)
        _check_range("predmaint.pipeline.max_raw_object_mb", p.max_raw_object_mb, 1, 5 * 1024 * 1024)
        _check_range("predmaint.pipeline.validation_sample_kb", p.validation_sample_kb, 1, 100 * 1024)
        if p.log_retention_days not in _LOG_RETENTION_DAYS:
            raise ConfigError(f"predmaint.pipeline.log_retention_days must be one of {sorted(_LOG_RETENTION_DAYS)}")
        v = self.vpc
        try:
            network = ipaddress.IPv4Network(v.cidr, strict=True) if isinstance(v.cidr, str) else None
        except ValueError:
            network = None
        if network is None or not 16 <= network.prefixlen <= 24:
            raise ConfigError(f"predmaint.vpc.cidr: {v.cidr!r} must be an IPv4 network like 10.42.0.0/16 "
                              "with a prefix length of 16..24 (one /24+ subnet per AZ is carved from it)")
        _check_range("predmaint.vpc.max_azs", v.max_azs, 1, 3)
        d = self.drift
        if not SCHEDULE_RE.match(d.schedule):
            raise ConfigError(f"predmaint.drift.schedule: {d.schedule!r} is not rate(...) or cron(...)")
        _check_range("predmaint.drift.window_hours", d.window_hours, 1, 24 * 90)
        _check_range("predmaint.drift.psi_threshold", d.psi_threshold, 0, 10)
        if not 0 < d.alpha < 1:
            raise ConfigError(f"predmaint.drift.alpha: {d.alpha!r} must lie strictly between 0 and 1")
        _check_instance("predmaint.drift.instance_type", d.instance_type)
        _check_range("predmaint.drift.max_runtime_minutes", d.max_runtime_minutes, 1, 5 * 24 * 60)
        if d.retrain_on_drift and not d.enabled:
            raise ConfigError("predmaint.drift.retrain_on_drift needs predmaint.drift.enabled")
        q = self.quality
        if not SCHEDULE_RE.match(q.schedule):
            raise ConfigError(f"predmaint.quality.schedule: {q.schedule!r} is not rate(...) or cron(...)")
        _check_range("predmaint.quality.coverage_min", q.coverage_min, 0, 1)
        _check_range("predmaint.quality.coverage_max", q.coverage_max, 0, 1)
        if q.coverage_min >= q.coverage_max:
            raise ConfigError(f"predmaint.quality: coverage_min ({q.coverage_min}) must be below coverage_max "
                              f"({q.coverage_max})")
        if q.max_rmse is not None:
            _check_range("predmaint.quality.max_rmse", q.max_rmse, 1e-9, 1e6)
        _check_instance("predmaint.quality.instance_type", q.instance_type)
        _check_range("predmaint.quality.max_runtime_minutes", q.max_runtime_minutes, 1, 5 * 24 * 60)
        if q.retrain_on_alarm and not q.enabled:
            raise ConfigError("predmaint.quality.retrain_on_alarm needs predmaint.quality.enabled")
        if q.fleet_training_data:
            self._check_fleet_training_data()
        self.decision_rule()


_LOG_RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                       2922, 3288, 3653}


def _check_instance(where: str, value: Any) -> None:
    if not isinstance(value, str) or not INSTANCE_TYPE_RE.match(value):
        raise ConfigError(f"{where}: {value!r} is not a SageMaker instance type like ml.m5.xlarge")


def _check_range(where: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}: must be a number in {low}..{high}, got {value!r}")


def _parse_value(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _set_dotted(doc: dict[str, Any], path: list[str], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"-c {CONTEXT_KEY}.{'.'.join(path)}: {part!r} is not an object")
    node[path[-1]] = value


def _build(cls: type, doc: Any, where: str) -> Any:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: must be an object, got {doc!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(doc) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in doc.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else known[name].default
        if hasattr(default, "__dataclass_fields__"):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
            continue
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}.{name}: must be true or false, got {value!r}")
        if isinstance(default, int | float) and not isinstance(default, bool) and value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{where}.{name}: must be a number, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"{where}.{name}: must be a whole number, got {value!r}")
            value = int(value)
        kwargs[name] = value
    return cls(**kwargs)
