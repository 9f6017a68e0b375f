"""What ``notebooks/sagemaker.ipynb`` runs: the pipeline's training code launched with the SageMaker
Python SDK v3 (AWS branch), or the local pipeline when there is no AWS account (local branch).

AWS branch, in the notebook's order (each function returns SDK objects the notebook then drives):

* ``connect`` -> ``Target``: a ``sagemaker.core`` ``Session`` (region, default bucket) and the role;
* ``upload_source``: the pipeline's own ``sourcedir.tar.gz`` (``stacks.assets.stage_training_source``);
* ``plan_run``: the prepare Lambda's ``plan_run`` on the local raw files -- job layout, the static
  hyperparameters and ranges of every candidate (``training_src/search_space.py``), the objective and
  the metric-definition regex, exactly what the state machine's Tune state receives;
* ``preprocess`` + ``upload_channels``: ``training_src/preprocess.py`` with the plan's arguments (the
  pipeline runs the same script as a Processing job), then the train/validation channels to S3;
* ``tuning_trainer`` + ``hyperparameter_tuner``: one ``ModelTrainer`` / ``HyperparameterTuner`` per
  candidate algorithm (see ``hyperparameter_tuner`` for why one tuning job per candidate);
* ``best_training_job`` + ``refit_trainer``: the winning trial, and the refit ``ModelTrainer`` whose
  hyperparameters come from the prepare Lambda's ``plan_refit`` (fit on train+validation);
* ``deploy`` / ``delete_endpoint``: ``sagemaker.core.resources`` Model, EndpointConfig and Endpoint
  with the pipeline's container environment (``stacks.hosting.hosting_environment``);
* ``predmaint.client.SageMakerClient`` invokes the endpoint (the project's request codec).

Local branch: ``run_local`` (``predmaint run``), ``LocalServer`` (``predmaint serve``),
``instances_for_units`` + ``predmaint.client.LocalClient`` (``predmaint invoke --test-unit``).

The SDK (``sagemaker-train``) lives in its own venv, ``.venv-sdk`` (docs/notebook.md),
so nothing here imports it at module level: the project's venv imports this module for the local
branch. No plan logic is repeated here: hyperparameters, ranges, objective and job layout all come
from the prepare Lambda's plan.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predmaint.processes import terminate

REPO = Path(__file__).resolve().parent.parent
MODE_ENV = "PREDMAINT_NOTEBOOK_MODE"
ROLE_ENV = "PREDMAINT_SAGEMAKER_ROLE_ARN"
#: hyperparameters the SDK sets itself from ``SourceCode`` (the tuner: script mode of the container)
SDK_SET = ("sagemaker_program", "sagemaker_submit_directory")
ENTRY_SCRIPT = "train.py"


class NotebookError(RuntimeError):
    """The notebook cannot go on; the message says what is missing and how to fix it."""


# --------------------------------------------------------------------------------------------
# mode and configuration
# --------------------------------------------------------------------------------------------

def choose_mode(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``("aws" | "local", why)``: ``$PREDMAINT_NOTEBOOK_MODE`` if set, else ``aws`` when the SDK is
    installed and boto3 finds credentials and a region, else ``local``. ``aws`` requested without
    what it needs raises ``NotebookError``."""
    env = os.environ if environ is None else environ
    requested = env.get(MODE_ENV, "").strip().lower()
    if requested not in ("", "aws", "local"):
        raise NotebookError(f"{MODE_ENV}={requested!r}: use 'aws', 'local' or leave it unset")
    if requested == "local":
        return "local", f"{MODE_ENV}=local"
    missing = None
    if importlib.util.find_spec("sagemaker") is None or importlib.util.find_spec("sagemaker.train") is None:
        missing = "the SageMaker SDK (sagemaker-train) is not installed here: `make sdk-setup`, then use .venv-sdk"
    else:
        import boto3

        session = boto3.Session()
        if session.get_credentials() is None:
            missing = "boto3 finds no AWS credentials"
        elif not session.region_name:
            missing = "no AWS region configured (AWS_DEFAULT_REGION or ~/.aws/config)"
    if missing and requested == "aws":
        raise NotebookError(f"{MODE_ENV}=aws but {missing}")
    if missing:
        return "local", missing
    return "aws", f"{MODE_ENV}=aws" if requested else "SDK installed and AWS credentials found"


# --------------------------------------------------------------------------------------------
# AWS branch
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Where the notebook's SageMaker jobs run and write: a ``sagemaker.core`` Session (its region and
    default bucket), the execution role the jobs assume, and a key prefix for everything uploaded."""

    session: Any
    role_arn: str
    prefix: str = "predmaint-sdk"

    @property
    def region(self) -> str:
        return self.session.boto_region_name

    @property
    def bucket(self) -> str:
        return self.session.default_bucket()


def connect(role_arn: str | None = None, prefix: str = "predmaint-sdk", boto_session: Any = None) -> Target:
    """A ``Target`` from the caller's AWS credentials. The role is ``role_arn``, else
    ``$PREDMAINT_SAGEMAKER_ROLE_ARN``, else the notebook instance's own role (SageMaker Studio)."""
    from sagemaker.core.helper.session_helper import Session, get_execution_role

    session = Session(boto_session=boto_session)
    role = role_arn or os.environ.get(ROLE_ENV)
    if not role:
        try:
            role = get_execution_role(session)
        except ValueError as exc:
            raise NotebookError(f"no execution role: set {ROLE_ENV} to the ARN of a role SageMaker can assume "
                                f"(AmazonSageMakerFullAccess or the training stack's job role) ({exc})") from None
    return Target(session, role, prefix.strip("/"))


def upload_source(target: Target) -> str:
    """Upload the pipeline's ``sourcedir.tar.gz`` (training_src, as the CDK app stages it) under a key
    named by its content digest; return its S3 URI (the ``SourceCode.source_dir`` of every job)."""
    from stacks.assets import stage_training_source

    tarball = stage_training_source()
    key_prefix = f"{target.prefix}/code/{tarball.parent.name[:16]}"
    return target.session.upload_data(str(tarball), bucket=target.bucket, key_prefix=key_prefix)


def plan_run(config: Any, data_dir: Path, target: Target, source_uri: str, run_id: str | None = None) -> dict[str, Any]:
    """The prepare Lambda's plan for ``config``'s dataset, validated against the local raw files,
    with S3 locations under ``target`` and ``source_uri`` as the script-mode source."""
    from predmaint.runner import prepare_module

    prepare = prepare_module()
    settings = prepare.Settings(data_bucket=target.bucket, artifacts_bucket=target.bucket,
                                raw_prefix=f"{target.prefix}/raw/", processed_prefix=f"{target.prefix}/processed/",
                                runs_prefix=f"{target.prefix}/runs/", job_prefix=config.job_prefix,
                                source_uri=source_uri, region=target.region)
    event = {"dataset": config.dataset, "profile": config.profile, "subset": config.subset, "run_id": run_id}
    try:
        return prepare.plan_run(event, prepare.LocalStore(data_dir), settings)
    except prepare.InputError as exc:
        raise NotebookError(f"prepare: {exc}") from None


def preprocess(plan: dict[str, Any], data_dir: Path, work_dir: Path) -> Path:
    """Run ``training_src/preprocess.py`` with the plan's arguments (those of the pipeline's Processing
    job) on the local raw files; return the output folder (``train/``, ``validation/``, ...).

    The plan's validated profile document goes to ``<work_dir>/profile/profile.json``, the local copy of
    what the Processing job's ``profile`` input mounts (as ``predmaint run`` does)."""
    from predmaint.runner import processing_arguments

    work_dir = Path(work_dir)
    profile_file = work_dir / "profile" / "profile.json"
    profile_file.parent.mkdir(parents=True, exist_ok=True)
    profile_file.write_text(json.dumps(plan["inputs"]["profile"], indent=1))
    out = work_dir / "processed"
    args = [sys.executable, str(REPO / "training_src" / "preprocess.py"),
            *processing_arguments(plan, "preprocess", profile_file),
            "--data-dir", str(data_dir), "--input-dir", str(work_dir / "input"), "--output-dir", str(out)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise NotebookError(f"preprocess.py failed (exit {done.returncode}): "
                            f"{(done.stderr.strip().splitlines() or ['(no output)'])[-1]}")
    return out


def upload_channels(target: Target, plan: dict[str, Any], processed: Path) -> list[Any]:
    """Upload ``train/`` and ``validation/`` to the plan's S3 prefixes; return them as ``InputData``."""
    from sagemaker.core.training.configs import InputData

    channels = []
    for name in ("train", "validation"):
        uri = plan["s3"][name]
        key_prefix = uri.split("/", 3)[3].rstrip("/")
        target.session.upload_data(str(Path(processed) / name), bucket=target.bucket, key_prefix=key_prefix)
        channels.append(InputData(channel_name=name, data_source=uri))
    return channels


def _trainer(target: Target, config: Any, plan: dict[str, Any], source_uri: str, hyperparameters: dict[str, str],
             output_uri: str, base_job_name: str) -> Any:
    """A ``ModelTrainer`` running ``train.py`` from ``source_uri`` in the pipeline's XGBoost container,
    on the pipeline's training instances (spot with its max wait and checkpoints when configured)."""
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        OutputDataConfig,
        SourceCode,
        StoppingCondition,
    )
    from sagemaker.train.model_trainer import ModelTrainer

    from stacks.images import xgboost_image_uri

    t = config.training
    stopping = StoppingCondition(max_runtime_in_seconds=t.max_runtime_minutes * 60,
                                 max_wait_time_in_seconds=t.max_wait_minutes * 60 if t.use_spot else None)
    trainer = ModelTrainer(
        sagemaker_session=target.session, role=target.role_arn, base_job_name=base_job_name,
        input_s3_key_prefix=f"{target.prefix}/jobs",
        training_image=xgboost_image_uri(target.region),
        source_code=SourceCode(source_dir=source_uri, entry_script=ENTRY_SCRIPT),
        compute=Compute(instance_type=t.instance_type, instance_count=1, volume_size_in_gb=t.volume_size_gb,
                        enable_managed_spot_training=t.use_spot),
        stopping_condition=stopping,
        checkpoint_config=CheckpointConfig(s3_uri=plan["s3"]["checkpoints"]) if t.use_spot else None,
        output_data_config=OutputDataConfig(s3_output_path=output_uri),
        hyperparameters=dict(hyperparameters),
    )
    # no metric definitions: the tuning service refuses them for the XGBoost image and reads its own
    # documented metric (the plan's objective) from train.py's lines (docs/aws.md, "Tuning contract")
    return trainer


def tuning_trainer(target: Target, config: Any, plan: dict[str, Any], algorithm: str, source_uri: str) -> Any:
    """The ``ModelTrainer`` of one candidate's tuning trials: the plan's static hyperparameters of
    ``algorithm`` (less ``sagemaker_program``/``sagemaker_submit_directory``, which the tuner sets from
    the trainer's ``SourceCode`` to the same values)."""
    static = plan["tuning"]["definitions"][algorithm]["static"]
    hyperparameters = {k: v for k, v in static.items() if k not in SDK_SET}
    return _trainer(target, config, plan, source_uri, hyperparameters, plan["s3"]["tuning_output"],
                    f"{config.job_prefix}-{algorithm}")


def parameter_ranges(plan: dict[str, Any], algorithm: str) -> dict[str, Any]:
    """The SDK's range objects for ``algorithm``, read from the plan's ``ParameterRanges`` (which the
    prepare Lambda renders from ``training_src/search_space.py``): nothing is retyped here."""
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter

    out: dict[str, Any] = {}
    ranges = plan["tuning"]["definitions"][algorithm]["ranges"]
    for r in ranges.get("IntegerParameterRanges", []):
        out[r["Name"]] = IntegerParameter(int(r["MinValue"]), int(r["MaxValue"]), scaling_type=r["ScalingType"])
    for r in ranges.get("ContinuousParameterRanges", []):
        out[r["Name"]] = ContinuousParameter(float(r["MinValue"]), float(r["MaxValue"]), scaling_type=r["ScalingType"])
    for r in ranges.get("CategoricalParameterRanges", []):
        out[r["Name"]] = CategoricalParameter(list(r["Values"]))
    return out


def hyperparameter_tuner(trainer: Any, config: Any, plan: dict[str, Any], algorithm: str,
                         max_jobs: int, max_parallel_jobs: int | None = None) -> Any:
    """A ``HyperparameterTuner`` over ``algorithm``'s ranges with the plan's objective and metric regex
    and the pipeline's strategy and early stopping.

    One tuning job per candidate: the pipeline's single job has one TrainingJobDefinition per
    candidate, but the SDK (sagemaker-train 1.27.0) builds the request's one ``TrainingJobDefinition``
    from ``self.model_trainer``, which ``HyperparameterTuner.create(model_trainer_dict=...)`` leaves
    unset: its ``tune()`` fails with ``AttributeError: 'NoneType' object has no attribute
    'training_image'`` (tried under moto). So the notebook tunes each candidate on its own and
    ``best_training_job`` picks the winner across them.
    """
    from sagemaker.train.tuner import HyperparameterTuner

    objective = plan["tuning"]["objective"]
    return HyperparameterTuner(
        model_trainer=trainer, objective_metric_name=objective["metric"], objective_type=objective["type"],
        hyperparameter_ranges=parameter_ranges(plan, algorithm),
        strategy=config.tuning.strategy, early_stopping_type=config.tuning.early_stopping,
        max_jobs=max_jobs, max_parallel_jobs=max_parallel_jobs or config.tuning.max_parallel_jobs,
        base_tuning_job_name=f"{config.job_prefix}-{algorithm}",
    )


def tuning_job_name(plan: dict[str, Any], algorithm: str) -> str:
    """``<plan's tuning job name>-<candidate number>``: one name per run and candidate (at most 32
    characters, the API's limit for a tuning job), so a re-run of a cell cannot reuse a name."""
    return f"{plan['jobs']['tuning']}-{list(plan['tuning']['definitions']).index(algorithm)}"


def best_training_job(plan: dict[str, Any], tuners: Mapping[str, Any]) -> dict[str, Any]:
    """The winning trial over every candidate's finished tuning job, as the API's ``BestTrainingJob``
    (what the prepare Lambda's refit action takes), ``TrainingJobDefinitionName`` = the candidate."""
    minimize = plan["tuning"]["objective"]["type"] == "Minimize"
    found = []
    for algorithm, tuner in tuners.items():
        job = tuner.latest_tuning_job.refresh()
        best = job.best_training_job
        if not best or not best.tuned_hyper_parameters:
            continue
        metric = best.final_hyper_parameter_tuning_job_objective_metric
        found.append({"TrainingJobDefinitionName": algorithm, "TrainingJobName": best.training_job_name,
                      "TunedHyperParameters": dict(best.tuned_hyper_parameters),
                      "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": metric.metric_name,
                                                                      "Value": float(metric.value)}})
    if not found:
        raise NotebookError(f"no tuning job has a best training job yet ({', '.join(tuners)}): "
                            "wait for them to complete, or see their failed trials in the console")
    values = [f["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for f in found]
    return found[values.index(min(values) if minimize else max(values))]


def refit_trainer(target: Target, config: Any, plan: dict[str, Any], best: dict[str, Any], source_uri: str) -> Any:
    """The refit ``ModelTrainer``: the prepare Lambda's ``plan_refit`` hyperparameters (the best trial's
    tuned values over its candidate's static ones, ``fit_on=train+validation``), less the ``sagemaker_*``
    keys that configure the container's own script mode: ``ModelTrainer.train`` runs ``train.py``
    through the SDK's driver, which would pass them to the script as arguments."""
    from predmaint.runner import prepare_module

    refit = prepare_module().plan_refit(plan, best)
    hyperparameters = {k: v for k, v in refit["hyperparameters"].items() if not k.startswith("sagemaker_")}
    return _trainer(target, config, plan, source_uri, hyperparameters, plan["s3"]["model_output"],
                    plan["jobs"]["refit"])


def deploy(target: Target, config: Any, model_data_url: str, name: str, wait: bool = True) -> Any:
    """Model -> EndpointConfig -> Endpoint (``sagemaker.core.resources``) for ``model_data_url`` in the
    pipeline's container with the pipeline's environment and variant; return the ``Endpoint``."""
    from sagemaker.core.resources import Endpoint, EndpointConfig, Model
    from sagemaker.core.shapes import ContainerDefinition, ProductionVariant

    from stacks.hosting import hosting_environment
    from stacks.images import xgboost_image_uri

    e, region, boto = config.endpoint, target.region, target.session.boto_session
    Model.create(model_name=name, execution_role_arn=target.role_arn, enable_network_isolation=True,
                 primary_container=ContainerDefinition(image=xgboost_image_uri(region), mode="SingleModel",
                                                       model_data_url=model_data_url,
                                                       environment=hosting_environment(config)),
                 session=boto, region=region)
    EndpointConfig.create(endpoint_config_name=name, session=boto, region=region, production_variants=[
        ProductionVariant(variant_name=e.variant_name, model_name=name, instance_type=e.instance_type,
                          initial_instance_count=e.initial_instance_count)])
    endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=name, session=boto, region=region)
    if wait:
        endpoint.wait_for_status("InService")
    return endpoint


def delete_endpoint(target: Target, name: str) -> None:
    """Delete the endpoint, its config and its model (each named ``name``); missing ones are skipped."""
    from botocore.exceptions import ClientError

    sm = target.session.boto_session.client("sagemaker", region_name=target.region)
    for call, key in ((sm.delete_endpoint, "EndpointName"), (sm.delete_endpoint_config, "EndpointConfigName"),
                      (sm.delete_model, "ModelName")):
        try:
            call(**{key: name})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ValidationException":
                raise


# --------------------------------------------------------------------------------------------
# local branch
# --------------------------------------------------------------------------------------------

def run_local(data_dir: Path, home: Path, trials: int, profile: str = "cmapss", subset: str | None = "FD001",
              seed: int = 0) -> Any:
    """``predmaint run``: the whole local pipeline; returns the runner's ``RunResult``."""
    from predmaint import runner

    return runner.run_pipeline(profile, subset, Path(data_dir), Path(home), trials=trials, seed=seed)


def instances_for_units(data_dir: Path, units: list[int], profile: str = "cmapss",
                   subset: str | None = "FD001") -> tuple[list[Any], dict[str, float]]:
    """``predmaint invoke --test-unit``'s input: the readings of test ``units`` and their true RUL."""
    from predmaint import cli

    return cli._test_unit_instances(argparse.Namespace(profile=profile, subset=subset, data_dir=Path(data_dir),
                                                       test_unit=list(units)))


class LocalServer:
    """``predmaint serve --model VERSION --port 0`` as a child process (``start``/``stop``); it is
    stopped when the interpreter exits, so a failed notebook leaves no server behind."""

    def __init__(self, home: Path, version: str | None, workers: int = 1):
        self.home, self.version, self.workers = Path(home), version, workers
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self.log: list[str] = []

    def start(self, timeout: float = 60.0) -> LocalServer:
        from predmaint.client import LocalClient

        cmd = [sys.executable, "-m", "predmaint", "--home", str(self.home), "serve", "--port", "0",
               "--workers", str(self.workers), *(["--model", self.version] if self.version else [])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        atexit.register(self.stop)
        lines: queue.Queue[str | None] = queue.Queue()

        def drain() -> None:  # keep reading, or a chatty server blocks on a full pipe
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line.rstrip())
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        while self.url is None:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise NotebookError("predmaint serve did not start: " + " | ".join(self.log[-5:]))
            found = re.search(r"on (http://\S+) with", line)
            if found:
                self.url = found.group(1)
        if not LocalClient(self.url).wait_ready(timeout):
            self.stop()
            raise NotebookError(f"predmaint serve on {self.url} did not answer /ping: " + " | ".join(self.log[-5:]))
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a graceful shutdown), SIGKILL after ``timeout``; returns the exit code."""
        return None if self.proc is None else terminate(self.proc, timeout)
