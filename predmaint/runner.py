"""Local mode: one pipeline execution on this machine, the same stages as the AWS state machine.

prepare (the prepare Lambda's own ``plan_run`` on local files) -> preprocess.py -> tuning
(``predmaint/tuning.py``: Optuna TPE over ``training_src.search_space``, each trial a train.py process)
-> refit on train+validation -> evaluate.py -> the promote Lambda's own ``promote`` and ``confirm``
(lambda/promote/handler.py, with cdk.json's promotion gates, read by ``predmaint.deployment.load``
before any work) against the local registry -> HTML report.
Every stage takes its arguments from the prepare Lambda's plan, as the state machine does: the
processing arguments, each candidate's static hyperparameters, and the refit's from ``plan_refit``.

Everything of a run lives in ``<home>/runs/<run-id>/`` (``plan.json``, ``profile/profile.json``: the one
profile every stage reads, as the prepare Lambda writes it next to an AWS run); the registry is only
touched at the end, atomically, so an interrupted run leaves it exactly as it was. Bad input (profile,
data, options, an unwritable home or registry) is refused before anything is written, and a failure
before training starts removes the run folder again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predmaint import deployment
from predmaint import zygote as zyg
from predmaint.errors import Interrupted, PipelineError, UsageError
from predmaint.modules import load_module
from predmaint.tuning import stop_signal, tune
from training_src import promotion, search_space
from training_src.profiles import Profile, ProfileError, is_profile_path, load_profile
from training_src.threads import job_environment

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "training_src"
log = logging.getLogger("predmaint.runner")


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    evaluation_path: Path
    decision: dict[str, Any]
    model_version: str | None
    report_path: Path | None = None


def _stage(name: str, progress: bool) -> Any:
    """Context manager that logs a stage with its wall time."""

    class _S:
        def __enter__(self) -> _S:
            self.t = time.time()
            if progress:
                print(f"▶ {name} ...", flush=True)
            log.info("stage=%s status=started", name)
            return self

        def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
            dt = time.time() - self.t
            status = "ok" if et is None else "failed"
            log.info("stage=%s status=%s seconds=%.1f", name, status, dt)
            if progress and et is None:
                print(f"  ✓ {name} ({dt:.1f}s)", flush=True)

    return _S()


def _run_script(args: list[str], env: dict[str, str] | None, what: str, cwd: Path | None = None) -> str:
    """Run a training_src script (``args[0]``) in a fresh interpreter, as SageMaker runs it, with ``env``
    over this process's environment and ``threads.JOB_ENVIRONMENT`` where neither sets it (as a job starts on
    SageMaker); its stdout. Exit 2 -> UsageError, other failures -> PipelineError."""
    full_env = job_environment({**os.environ, **(env or {})})
    done = subprocess.run([sys.executable, *args], env=full_env, cwd=cwd, capture_output=True, text=True)
    stdout, stderr, returncode = done.stdout, done.stderr, done.returncode
    if returncode != 0:
        msg = (stderr.strip().splitlines() or ["(no output)"])[-1]
        msg = msg[len("error: "):] if msg.startswith("error: ") else msg
        if returncode == 2:
            raise UsageError(f"{what}: {msg}")
        raise PipelineError(f"{what} failed (exit {returncode}): {msg}")
    return stdout


#: the thread settings of the training scripts (unless the environment sets them): OpenMP and BLAS read
#: them once, when they are loaded (by the script server for the trials, by the script's own interpreter
#: for the refit and the evaluation). One BLAS thread (as the trials had; the linear candidate's solver);
#: xgboost's threads come from each script's ``nthread`` (1 per trial, all cores for the refit).
#: Thread counts and wait policies do not change results.
BLAS_THREADS = (("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"))
#: the refit's and the evaluation's: they run alone on every core, as on SageMaker, and an OpenMP thread
#: that waits for its partners spins at most ``GOMP_SPINCOUNT`` 1,000 times before it sleeps (libgomp, which
#: scikit-learn's and xgboost's wheels load, spins 300,000 times by default): on a machine whose cores are
#: shared, a spinning thread burns the time its descheduled partner needs. FD002's hgb refit alone
#: (2026-12-08, this machine's slow phase; the same model bytes every way), idle / beside two busy
#: processes / beside a second such refit: by default 53.9 / 477.4 / over 300 s (stopped); 10,000 spins 50.2 /
#: 184.0 / over 535 s (stopped); **1,000 spins 62.9 / 176.0 / 171.4 s**; ``OMP_WAIT_POLICY=PASSIVE`` (no
#: spin) 187.1 / 146.5 / 89.3 s (idle, its threads sleep and wake at every parallel region of the hgb fit).
#: 1,000 is the one setting without a bad case.
SCRIPT_THREADS = (*BLAS_THREADS, ("GOMP_SPINCOUNT", "1000"))
#: the tuning trials' (the script server's): ``OMP_WAIT_POLICY=PASSIVE``, idle OpenMP threads sleep
#: instead of spinning, which with trials side by side on a shared machine made a 2-thread xgboost fit
#: ~2-20x slower than a 1-thread one (the spinning thread waits for a descheduled partner). Not for the
#: refit and the evaluation (above): FD002's hgb refit 93.3 s (27 s of it system CPU) against 34.7 s without
#: it (2026-12-07, idle, the same model bytes). No ``GOMP_SPINCOUNT`` here: libgomp takes it over the policy.
TRIAL_THREADS = (*BLAS_THREADS, ("OMP_WAIT_POLICY", "PASSIVE"))


def script_environment(settings: tuple[tuple[str, str], ...] = SCRIPT_THREADS) -> dict[str, str]:
    """This process's environment with ``settings`` (``SCRIPT_THREADS``: the refit's and the evaluation's;
    ``TRIAL_THREADS``: the script server's) where it does not set them: the environment a training script
    (train.py, evaluate.py) starts with, ``threads.JOB_ENVIRONMENT`` included."""
    env = job_environment(os.environ)
    for name, value in settings:
        if name == "GOMP_SPINCOUNT" and "OMP_WAIT_POLICY" in env:
            continue  # the environment's own wait policy decides the spin (libgomp takes the count over it)
        env.setdefault(name, value)
    return env


def _start_server(run_dir: Path) -> zyg.Zygote | None:
    """The run's script server for the tuning trials (see predmaint/zygote.py), or None where it is
    unavailable. It starts with ``TRIAL_THREADS``: its forks keep the thread settings it loaded."""
    if not zyg.available():
        return None
    try:
        return zyg.Zygote(SRC, str(run_dir), script_environment(TRIAL_THREADS))
    except OSError as exc:
        log.warning("script server unavailable (%s); scripts run as fresh interpreters", exc)
        return None


def dataset_folder(profile: Profile) -> str:
    """The data-dir folder (= S3 raw/<dataset>/) that holds a profile's files."""
    rel = profile.file("train") or profile.file("data") or ""
    return rel.split("/", 1)[0] if "/" in rel else profile.name


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------
def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:4]


def writable_problem(path: Path) -> str | None:
    """Why new files cannot be created in ``path`` (or, if it does not exist yet, in the nearest
    existing folder above it, where it would be created); None if they can.

    Probes by creating and removing a temporary file, so permission bits, ACLs and read-only mounts
    all answer as the real writes would. Creates nothing that stays.
    """
    target = Path(path)
    while not target.exists() and target.parent != target:
        target = target.parent
    if not target.is_dir():
        return f"{target} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        return f"cannot create files in {target} ({exc.strerror or exc})"
    return None


def check_home_writable(home: Path) -> None:
    """``UsageError`` unless a run can write its folder under ``<home>/runs`` AND register its model in
    ``<home>/registry`` (checked before any work: a read-only registry found after training wastes
    the run)."""
    registry = home / "registry"
    probes = [("runs folder", home / "runs"), ("model registry", registry)]
    probes += [("model registry", registry / sub) for sub in ("packages", ".staging") if (registry / sub).is_dir()]
    for what, path in probes:
        problem = writable_problem(path)
        if problem:
            raise UsageError(f"{what} {path} is not writable: {problem}; fix its permissions or choose "
                             "another --home (PREDMAINT_HOME)")
    lock = registry / ".lock"
    if lock.exists():
        try:
            with open(lock, "a"):
                pass
        except OSError as exc:
            raise UsageError(f"model registry lock {lock} is not writable ({exc.strerror or exc}); fix its "
                             "permissions or choose another --home (PREDMAINT_HOME)") from None


def missing_data_hint(profile: Profile, data_dir: Path) -> str:
    """What to do when a profile's raw files are not in ``data_dir``."""
    from predmaint import data as datasets

    folder = dataset_folder(profile)
    if folder in datasets.SOURCES:
        return (f"run `predmaint data --data-dir {data_dir}` to download the public datasets (C-MAPSS "
                "FD001-FD004, AI4I 2020), or point --data-dir (PREDMAINT_DATA_DIR) at a folder that has them")
    return (f"put the files of profile {profile.name!r} under {data_dir / folder}/, or point --data-dir "
            f"(PREDMAINT_DATA_DIR) at the folder that holds {folder}/")


def event_profile(profile_ref: str | os.PathLike, profile: Profile) -> str | dict[str, Any]:
    """``event.profile`` for the prepare Lambda: a shipped profile's name as the name, a profile FILE as
    its document (the run then uses exactly that document, whatever its name)."""
    return profile.to_dict() if is_profile_path(profile_ref) else profile.name


def refit_command(plan: dict[str, Any], tuning: dict[str, Any], objective_metric: str, seed: int,
                  run_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The refit stage's ``train.py`` arguments and SageMaker channel environment for a run: the tuning's
    best trial (what the tuning job reports as BestTrainingJob) planned by the Lambda's own
    ``plan_refit``, on ``run_dir``'s processed train and validation channels (``bench/hosts.py`` runs the
    same command on several local hosts)."""
    best = tuning["best"]
    refit = prepare_module().plan_refit(plan, {
        "TrainingJobDefinitionName": best["algorithm"],
        "TunedHyperParameters": {k: str(v) for k, v in
                                 search_space.to_wire(best["algorithm"], best["params"]).items()},
        "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": objective_metric, "Value": best["value"]}})
    # all cores for the one fit (xgboost's result does not depend on its thread count)
    env = {"SM_CHANNEL_TRAIN": str(run_dir / "processed" / "train"),
           "SM_CHANNEL_VALIDATION": str(run_dir / "processed" / "validation"),
           "SM_MODEL_DIR": str(run_dir / "model"), "SM_OUTPUT_DATA_DIR": str(run_dir / "refit-output"),
           "SM_NUM_CPUS": str(os.cpu_count() or 1)}
    argv = [str(SRC / "train.py"), *search_space.script_arguments(refit["hyperparameters"]), "--seed", str(seed)]
    return argv, env


def evaluate_command(run_dir: Path, model: Path, output_dir: Path) -> list[str]:
    """The evaluation stage's ``evaluate.py`` arguments for a run: ``model`` (its model.tar.gz) on ``run_dir``'s
    processed test, baseline, train and validation channels and its tuning record, written to ``output_dir``
    (``bench/stage_alone.py`` runs the same command)."""
    p = run_dir / "processed"
    return [str(SRC / "evaluate.py"), "--model", str(model), "--test", str(p / "test"), "--baseline", str(p / "baseline"),
            "--train", str(p / "train"), "--validation", str(p / "validation"), "--tuning", str(run_dir / "tuning.json"),
            "--output-dir", str(output_dir)]


def prepare_module() -> Any:
    """The prepare Lambda's handler module (``lambda/prepare/handler.py``), loaded as local mode runs it."""
    return load_module(deployment.repo_file("lambda/prepare/handler.py"), "predmaint_lambda_prepare")


def plan_locally(profile_ref: str | os.PathLike, profile: Profile, data_dir: Path) -> tuple[dict[str, Any], dict]:
    """The prepare Lambda's own ``plan_run`` on local files: ``(plan, profile document)``.

    The event is the one ``predmaint start-training`` sends (a name, or the profile document); the
    document is removed from the plan, as the Lambda handler does before writing it next to the run.
    """
    prepare = prepare_module()
    event = {"dataset": dataset_folder(profile), "profile": event_profile(profile_ref, profile),
             "subset": profile.subset, "run_id": None}
    try:
        plan = prepare.plan_run(event, prepare.LocalStore(data_dir))
    except prepare.MissingDataError as exc:
        raise UsageError(f"prepare: {exc}; {missing_data_hint(profile, data_dir)}") from exc
    except prepare.InputError as exc:
        raise UsageError(f"prepare: {exc}") from exc
    return plan, plan["inputs"].pop("profile")


def promote_module() -> Any:
    """The promote Lambda's handler module (``lambda/promote/handler.py``), loaded as local mode runs it."""
    return load_module(deployment.repo_file("lambda/promote/handler.py"), "predmaint_lambda_promote")


def promote_locally(registry: Any, run_id: str, profile: Profile, artifact: Path,
                    report: dict[str, Any], thresholds: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The promote Lambda's ``promote`` and, when the challenger passes, ``confirm`` (locally there is
    no blue/green deployment that could roll back: serving the champion is the local registry's
    pointer) against ``registry`` (a ``LocalRegistryClient``) with the deployment's promotion gates
    ``thresholds`` (``AppConfig.promotion``). Returns ``(decision, package)``."""
    promote = promote_module()
    settings = promote.Settings(model_package_group="local", thresholds=thresholds)
    event = {"action": "promote", "run_id": run_id, "task": profile.task, "profile": profile.name,
             "subset": profile.subset, "model_data_url": str(artifact), "report": report}
    try:
        outcome = promote.promote(event, registry, settings=settings)
    except promotion.MetricsError as exc:
        raise PipelineError(f"promotion: {exc}") from exc
    if outcome["approved"]:
        promote.confirm({"run_id": run_id, "model_package_arn": outcome["model_package_arn"]}, registry)
    version = registry._version(outcome["model_package_arn"])
    decision = outcome.get("decision") or {"approved": outcome["approved"], "reason": outcome["reason"]}
    return {**decision, "status": "Approved" if outcome["approved"] else "Rejected"}, \
        registry.registry.get(version)


def processing_arguments(plan: dict[str, Any], stage: str, profile_file: Path) -> list[str]:
    """A processing script's planned arguments with the container's profile path replaced by the run's
    local copy (``<run>/profile/profile.json``, what the ``profile`` ProcessingInput mounts in AWS)."""
    container = plan["arguments"][stage]
    return [str(profile_file) if a.endswith("/profile/profile.json") else a for a in container]


def run_pipeline(profile: str | os.PathLike, subset: str | None, data_dir: Path, home: Path, trials: int = 20,
                 parallel: int | None = None, seed: int = 0, run_id: str | None = None,
                 progress: bool = True, fleet_data: bool = False) -> RunResult:
    """Run every stage for ``profile``/``subset`` on ``data_dir``; register the model in ``home``.

    ``profile`` is a shipped profile's name or the path of a profile file (``is_profile_path``).
    Raises ``UsageError`` for bad input (unknown profile, missing data, bad options, unwritable home)
    and ``PipelineError`` when a stage fails. Everything up to the prepare stage is checked before
    anything is written, and a failure before training starts removes the run's folder again, so
    bad input leaves nothing behind. Returns where the run's files are and the decision.
    ``fleet_data``: also train on the fleet's failure histories under ``<home>/fleet-data`` (``fleetdata``).
    """
    if trials < 1:
        raise UsageError(f"--trials must be at least 1, got {trials}")
    parallel = parallel or min(2, os.cpu_count() or 1)
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {parallel}")
    try:
        prof = load_profile(profile, subset)
    except ProfileError as exc:
        raise UsageError(str(exc)) from exc
    # absolute: the scripts and the script server run with other working directories
    data_dir = Path(data_dir).absolute()
    if not data_dir.is_dir():
        raise UsageError(f"data directory {data_dir} does not exist; run `predmaint data` or set "
                         "PREDMAINT_DATA_DIR (or --data-dir) to a folder holding the profile's dataset folder")
    run_id = run_id or new_run_id()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", run_id):
        raise UsageError(f"run id {run_id!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    home = Path(home).absolute()
    run_dir = home / "runs" / run_id
    if run_dir.exists():
        raise UsageError(f"run {run_id} already exists at {run_dir}; choose another --run-id")
    check_home_writable(home)
    # the deployment's promotion gates, read (and checked) before any work, as everything the run needs
    gates = deployment.load().promotion
    started = time.time()
    fleet_lineage: dict[str, Any] | None = None
    if fleet_data:  # a temporary data dir: the train file as parts, the shipped one + the fleet's histories
        from predmaint import fleetdata

        data_dir, fleet_files = fleetdata.overlay(data_dir, home, prof)
        fleet_lineage = {"files": fleet_files, "units": sum(f["units"] for f in fleet_files),
                         "rows": sum(f["rows"] for f in fleet_files)}

    def drop_overlay() -> None:
        if fleet_data:
            shutil.rmtree(data_dir, ignore_errors=True)  # the links only; the files stay where they are

    try:
        plan, profile_doc = plan_locally(profile, prof, data_dir)  # reads only: bad data leaves nothing behind
    except BaseException:
        drop_overlay()
        raise
    prepared = time.time() - started
    created = [p for p in (home, home / "runs", run_dir) if not p.exists()]  # removed again on early failure
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        drop_overlay()
        raise UsageError(f"cannot create run directory {run_dir}: {exc.strerror}") from exc
    log.info("run=%s profile=%s subset=%s trials=%d parallel=%d seed=%d", run_id, prof.name, prof.subset,
             trials, parallel, seed)
    if progress:
        print(f"run {run_id}: {prof.name} {prof.subset or ''} · {trials} trials · {parallel} in parallel "
              f"· seed {seed}\n  folder {run_dir}\n  ✓ prepare (prepare Lambda handler on local files) "
              f"({prepared:.1f}s)", flush=True)
        if fleet_lineage is not None:
            print(f"  + fleet data: {len(fleet_lineage['files'])} failure histories ({fleet_lineage['units']} units, "
                  f"{fleet_lineage['rows']} rows) from {fleetdata.fleet_data_dir(home)}", flush=True)

    # SIGTERM behaves like Ctrl-C: stop at once (trials killed in the handler), nothing is registered
    # before the end, and the stopped run's folder is removed
    previous = {sig: signal.signal(sig, stop_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = None
    training = False  # until tuning starts, a failure removes the run folder (bad input leaves nothing)
    try:
        (run_dir / "plan.json").write_text(json.dumps(plan, indent=1, default=str))
        if fleet_lineage is not None:  # the run's lineage: which fleet histories it trained on (the report shows them)
            (run_dir / "fleet-data.json").write_text(json.dumps(fleet_lineage, indent=1))
        profile_file = run_dir / "profile" / "profile.json"  # the run's one profile, as in S3
        profile_file.parent.mkdir()
        profile_file.write_text(json.dumps(profile_doc, indent=1))
        # started early: it imports the training stack while preprocess runs
        server = _start_server(run_dir)

        with _stage("preprocess (training_src/preprocess.py)", progress):
            out = _run_script([str(SRC / "preprocess.py"), *processing_arguments(plan, "preprocess", profile_file),
                               "--seed", str(seed), "--data-dir", str(data_dir), "--input-dir", str(run_dir / "input"),
                               "--output-dir", str(run_dir / "processed")], None, "preprocess")
            if progress:
                print("  " + out.strip().splitlines()[-1], flush=True)

        training = True
        with _stage(f"tuning ({trials} trials of training_src/train.py, Optuna TPE)", progress):
            tuning = tune(run_dir, prof, trials, parallel, seed, progress, server, plan)
            if progress:
                b = tuning["best"]
                print(f"  best: {b['algorithm']} {prof.objective_metric}={b['value']:.4f} (trial {b['trial']})")

        # the refit and the evaluation are one long process each: run, as SageMaker runs them, in a fresh
        # interpreter that holds the script's own imports, not a fork of the server that holds every stage's
        # (matplotlib, xgboost for an hgb refit, ...): what a process holds here is what its instance must
        # hold. Their ~2 s of imports are paid once; the server, whose trials are done, goes first.
        if server is not None:
            server.close()
            server = None
        with _stage("refit on train+validation with the best hyperparameters", progress):
            best = tuning["best"]
            argv, env = refit_command(plan, tuning, prof.objective_metric, seed, run_dir)
            _run_script(argv, {**script_environment(), **env}, "refit")
            from predmaint.registry import make_model_archive

            artifact = make_model_archive(run_dir / "model", run_dir / "model.tar.gz")

        with _stage("evaluate (training_src/evaluate.py)", progress):
            out = _run_script(evaluate_command(run_dir, artifact, run_dir / "evaluation"), script_environment(),
                              "evaluate")
            if progress:
                print("  " + out.strip().splitlines()[-1], flush=True)
            report = json.loads((run_dir / "evaluation" / "evaluation.json").read_text())
            plots = run_dir / "plots"
            plots.mkdir(exist_ok=True)
            for name in report.get("plots", []):
                shutil.copy2(run_dir / "evaluation" / name, plots / name)
            report["plots"] = [f"plots/{n}" for n in report.get("plots", [])]
            report["run_id"] = run_id
            evaluation_path = run_dir / "evaluation.json"
            evaluation_path.write_text(json.dumps(report, indent=1))

        with _stage("promotion (the promote Lambda's promote + confirm, cdk.json's thresholds)", progress):
            from predmaint.data import file_sha256
            from predmaint.registry import LocalRegistryClient, Registry

            registry = Registry(home)
            champion = registry.champion()
            manifest = json.loads((run_dir / "processed" / "manifest.json").read_text())
            lineage = {"profile": prof.name, "subset": prof.subset, "profile_sha256": file_sha256(profile_file),
                       "dataset_files": manifest.get("files"),
                       "test_fingerprint": report.get("test_fingerprint"), "algorithm": best["algorithm"],
                       "hyperparameters": best["params"], "code_commit": git_commit(), "seed": seed,
                       "run_id": run_id, "plan_run_id": plan.get("run_id"),
                       **({"fleet_data": fleet_lineage} if fleet_lineage is not None else {})}
            decision, package = promote_locally(LocalRegistryClient(registry, report, lineage), run_id, prof,
                                                artifact, report, gates)
            doc = {**decision, "model_version": str(package.version),
                   "champion_before": str(champion.version) if champion else None}
            (run_dir / "decision.json").write_text(json.dumps(doc, indent=1))
            from predmaint import streaming  # a new champion: the stream's summaries for it

            rebuilt = streaming.after_promotion(home, doc["champion_before"])
            if rebuilt is not None and progress:
                print(f"  stream state: {len(rebuilt.states)} asset(s) got the new champion's life summary "
                      f"({len(rebuilt.errors)} failed)", flush=True)
    except KeyboardInterrupt:
        training = False  # the folder of a stopped run goes, like that of a run that failed early
        raise Interrupted(f"run {run_id} interrupted; the registry and champion are unchanged and its "
                          "folder is removed") from None
    except OSError as exc:
        raise PipelineError(f"run {run_id}: {exc.strerror or exc} ({getattr(exc, 'filename', '')})") from exc
    finally:
        if server is not None:
            server.close()  # also SIGKILLs any script still running (interrupted run)
        drop_overlay()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not training:  # failed before training started: leave nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
            for folder in reversed(created[:-1]):  # the home and runs/ folders this run created, if empty
                with contextlib.suppress(OSError):
                    folder.rmdir()

    report_path = None
    try:
        from predmaint import report as report_mod

        report_path = report_mod.render(run_dir)
    except Exception as exc:  # the report is a convenience; the run itself succeeded
        log.warning("report rendering failed: %s", exc)
    elapsed = time.time() - started
    (run_dir / "summary.json").write_text(json.dumps({"run_id": run_id, "seconds": round(elapsed, 1),
                                                      "decision": doc, "evaluation": str(evaluation_path)}))
    if progress:
        if prof.is_regression:
            m = f"RMSE {report['regression_metrics']['rmse']['value']:.2f} · NASA {report['nasa_score']:.0f}"
        else:
            b = report["binary_classification_metrics"]
            m = f"PR-AUC {b['pr_auc']['value']:.3f} · F1 {b['f1']['value']:.3f}"
        print(f"\nrun {run_id} done in {elapsed:.0f}s: {m} · baseline improvement "
              f"{report.get('improvement_pct', 0):.1f}% · model v{package.version} {package.status} "
              f"({doc['reason']})" + (f"\n  report {report_path}" if report_path else ""), flush=True)
    return RunResult(run_id, run_dir, evaluation_path, doc, str(package.version), report_path)
