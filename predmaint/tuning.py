"""Local mode's hyperparameter tuning: Optuna over the shared search space, each trial a train.py process.

What a SageMaker tuning job does for the deployed pipeline: TPE sampling over ``training_src.search_space``
(every candidate of ``training_src.candidates`` starts from its ``START`` point), each trial runs
train.py as SageMaker would (SM_* env vars, hyperparameters as CLI args, as a fork of the run's script
server when there is one), and hopeless trials are pruned from the objective lines train.py prints.
``tune`` writes ``tuning.json`` into the run folder and returns it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from predmaint import zygote as zyg
from predmaint.errors import PipelineError
from training_src import search_space
from training_src.candidates import CANDIDATES
from training_src.profiles import Profile
from training_src.threads import job_environment

SRC = Path(__file__).resolve().parent.parent / "training_src"
#: train.py's objective lines (candidates/base.py objective_line): ``[25]<TAB>validation-rmse:12.3`` while
#: boosting, ``final [300]<TAB>validation-rmse:12.3`` at the end (the value)
_OBJECTIVE_RE = re.compile(r"^(final )?\[(\d+)\]\t(validation-(?:rmse|aucpr)):([0-9.eE+-]+|nan)$")


def trial_environment(run_dir: Path, trial_dir: Path, nthread: int) -> dict[str, str]:
    """The environment a tuning trial's train.py starts with, as a tuning job's training job: this process's,
    ``threads.JOB_ENVIRONMENT`` where it does not set them, and the ``SM_*`` variables of sagemaker-training
    (channels from ``run_dir/processed``, model and output under ``trial_dir``) with ``nthread`` cores."""
    return {**job_environment(os.environ), "SM_CHANNEL_TRAIN": str(run_dir / "processed" / "train"),
            "SM_CHANNEL_VALIDATION": str(run_dir / "processed" / "validation"),
            "SM_MODEL_DIR": str(trial_dir / "model"), "SM_OUTPUT_DATA_DIR": str(trial_dir / "output"),
            "SM_NUM_CPUS": str(nthread), "OMP_NUM_THREADS": str(nthread)}


class _Trials:
    """Runs train.py trials as subprocesses and feeds their objective lines to Optuna."""

    def __init__(self, run_dir: Path, profile: Profile, nthread: int, seed: int, server: zyg.Zygote | None = None,
                 static: dict[str, dict[str, str]] | None = None):
        self.run_dir, self.profile, self.nthread, self.seed = run_dir, profile, nthread, seed
        #: each candidate's static hyperparameters as the plan holds them (SageMaker's encoding)
        self.static = static or {a: {k: search_space.encode(v) for k, v in
                                     search_space.static_hyperparameters(a, profile).items()}
                                 for a in search_space.ALGORITHMS}
        self.server = server
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.procs: set[Any] = set()  # subprocess.Popen or zygote.ForkedProcess
        self.stopped = False

    def suggest(self, trial: Any) -> tuple[str, dict[str, Any]]:
        """Sample a candidate and its hyperparameters (in the main thread, in trial order: reproducible).
        The candidates are the plan's (``search_space.tuned_algorithms``), as a SageMaker tuning job's."""
        algorithm = trial.suggest_categorical("algorithm", list(self.static))
        return algorithm, search_space.suggest(trial, algorithm)

    def objective(self, trial: Any, algorithm: str, params: dict[str, Any]) -> float:
        import optuna

        tdir = self.run_dir / "tuning" / f"trial-{trial.number:03d}"
        # the tuned values under the names a tuning job gives them (train.py maps them back)
        hp = {**self.static[algorithm], **{k: str(v) for k, v in search_space.to_wire(algorithm, params).items()}}
        env = trial_environment(self.run_dir, tdir, self.nthread)
        argv = [*search_space.script_arguments(hp), "--seed", str(self.seed)]
        started = time.time()
        if self.server is not None:  # a fork of the script server: no interpreter start, no imports
            proc = self.server.spawn(SRC / "train.py", argv, env)
        else:
            proc = subprocess.Popen([sys.executable, str(SRC / "train.py"), *argv], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with self.lock:
            self.procs.add(proc)
            if self.stopped:  # the run was interrupted while this trial was starting
                proc.kill()
        value, state = None, "COMPLETE"
        try:
            for line in proc.stdout:
                m = _OBJECTIVE_RE.match(line.strip())
                if not m:
                    continue
                final, step, v = m.group(1), m.group(2), float(m.group(4))
                if final:
                    value = v
                    continue
                trial.report(v, int(step))
                if trial.should_prune():
                    proc.kill()
                    state = "PRUNED"
                    break
            proc.wait()
            if state != "PRUNED" and (proc.returncode != 0 or value is None):
                err = (proc.stderr.read().strip().splitlines() or ["no objective line"])[-1]
                state = "FAIL"
                raise PipelineError(f"trial {trial.number} ({algorithm}) failed: {err}")
        finally:
            with self.lock:
                self.procs.discard(proc)
                self.records.append({"number": trial.number, "algorithm": algorithm, "params": params,
                                     "value": value, "state": state,
                                     "duration_s": round(time.time() - started, 2)})
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            shutil.rmtree(tdir / "model", ignore_errors=True)  # trial models are not kept
        if state == "PRUNED":
            raise optuna.TrialPruned()
        return value

    def kill_all(self) -> None:
        with self.lock:
            self.stopped = True
            for p in self.procs:
                p.kill()


#: the trial runners of the tuning in progress: a stop signal kills their processes in its handler, at
#: once, rather than when the main thread next gets to it (which, on a loaded machine, took over 30 s)
_ACTIVE_TRIALS: list[_Trials] = []


def stop_signal(signum: int, frame: Any) -> None:
    """SIGINT/SIGTERM during a run: kill the running trials now, then unwind as Ctrl-C does."""
    for trials in list(_ACTIVE_TRIALS):
        trials.kill_all()
    raise KeyboardInterrupt


def new_study(direction: str, seed: int, trials: int, algorithms: list[str]) -> Any:
    """The Optuna study ``tune`` runs: TPE + median pruning, with the starting point of each of
    ``algorithms`` (the plan's candidates, in order; at most ``trials`` of them) enqueued first."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, max(2, trials // 3)))
    # only xgboost reports intermediate objectives, so its trials are judged against earlier xgboost
    # trials alone: with n_min_trials=1 the single starting trial pruned nearly every later one
    # (FD002, 30 trials: 1 xgboost trial completed against 20 hgb ones), and the algorithm choice
    # compared hgb's best of 20 with xgboost's best of 1. Four references before any pruning.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=100, n_min_trials=4)
    study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
    # start with each candidate's starting point so every algorithm is tried at least once
    for name in algorithms[:trials]:
        start = CANDIDATES[name].START
        study.enqueue_trial({"algorithm": name, **{f"{name}.{k}": v for k, v in start.items()}})
    return study


def tune(run_dir: Path, profile: Profile, trials: int, parallel: int, seed: int, progress: bool,
         server: zyg.Zygote | None = None, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """Optuna TPE + median pruning over the shared search space; writes and returns tuning.json.

    Each trial is its own process (a fork of ``server``, else a fresh interpreter) with
    ``cores // parallel`` xgboost threads."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if profile.objective_direction == "Minimize" else "maximize"
    cores = os.cpu_count() or 1
    static = {a: d["static"] for a, d in plan["tuning"]["definitions"].items()} if plan else None
    runner = _Trials(run_dir, profile, max(1, cores // parallel), seed, server, static)
    _ACTIVE_TRIALS.append(runner)
    study = new_study(direction, seed, trials, list(runner.static))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=trials, desc="  tuning", unit="trial", file=sys.stdout, dynamic_ncols=True)

    def on_done(study: Any, frozen: Any) -> None:
        if bar is not None:
            try:
                best = f"{study.best_value:.4f}"
            except ValueError:
                best = "-"
            bar.set_postfix_str(f"best {profile.objective_metric}={best}")
            bar.update(1)

    from concurrent.futures import ThreadPoolExecutor

    def run_one(item: tuple[Any, str, dict[str, Any]]) -> tuple[Any, float | None, Any]:
        trial, algorithm, params = item
        try:
            return trial, runner.objective(trial, algorithm, params), None
        except optuna.TrialPruned:
            return trial, None, optuna.trial.TrialState.PRUNED

    # Batch-synchronous parallelism: ask `parallel` trials, run them together, tell the results in
    # trial order. Sampling and pruning then see the same history whatever the timing, so a fixed
    # seed gives the same trials, the same best model and the same report.
    pool = ThreadPoolExecutor(parallel)
    try:
        for start in range(0, trials, parallel):
            batch = []
            for _ in range(min(parallel, trials - start)):
                trial = study.ask()
                batch.append((trial, *runner.suggest(trial)))
            for trial, value, state in pool.map(run_one, batch):
                if state is None:
                    study.tell(trial, value)
                else:
                    study.tell(trial, state=state)
                on_done(study, trial)
    except BaseException:
        # stop at once on Ctrl-C/SIGTERM/failure: kill running trials before waiting for threads
        runner.kill_all()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        _ACTIVE_TRIALS.remove(runner)
        if bar is not None:
            bar.close()
    done = [r for r in runner.records if r["state"] == "COMPLETE"]
    if not done:
        raise PipelineError("no tuning trial completed")
    better = min if direction == "minimize" else max
    best = better(done, key=lambda r: r["value"])
    by_algo = {}
    for algo in runner.static:
        rows = [r for r in done if r["algorithm"] == algo]
        if rows:
            b = better(rows, key=lambda r: r["value"])
            by_algo[algo] = {"params": b["params"], "value": b["value"], "trial": b["number"]}
    doc = {"objective": profile.objective_metric, "direction": direction, "sampler": "TPE", "seed": seed,
           "n_trials": trials, "parallel": parallel,
           "trials": sorted(runner.records, key=lambda r: r["number"]),
           "best": {"algorithm": best["algorithm"], "params": best["params"], "value": best["value"],
                    "trial": best["number"]},
           "best_by_algorithm": by_algo}
    (run_dir / "tuning.json").write_text(json.dumps(doc, indent=1))
    return doc
