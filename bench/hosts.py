"""Multi-instance training on one machine: a local run's refit as N SageMaker training hosts.

    .venv/bin/python bench/hosts.py --run <home>/runs/<run-id> [--hosts 1,2] [--algorithm xgboost]
        [--fit_on train+validation,train] [--json out.json]
    PREDMAINT_DATA_DIR=... .venv/bin/python bench/hosts.py --small [...]   (what ``make bench`` runs)

The refit is the runner's own command (``predmaint.runner.refit_command``: the tuning's best trial, or the
best trial of ``--algorithm``, planned by the Lambda's ``plan_refit``). The run's processed train channel is
dealt by asset into N part files, one per host (whole assets, in the order they were written: what
``ShardedByS3Key`` does with N objects of TransformFeatures' output); the validation channel is given to every
host (``FullyReplicated``) and the feature spec and drift baseline to the first host only (sharding hands every
key out once). N ``train.py`` processes start at once, in the environment the runner starts its refit with
(``runner.script_environment()``: thread settings, libarrow's pool), with ``SM_HOSTS``/``SM_CURRENT_HOST`` set (hosts
127.0.0.1, 127.0.0.2, ...: loopback addresses) and form xgboost's collective as SageMaker hosts do
(``training_src/distributed.py``), each with ``SM_NUM_CPUS`` = cores / N. With one host the variables are not
set: the single-instance refit. ``--fit_on train`` runs a tuning trial of the same candidate and hyperparameters
instead (the same command with ``--fit_on train``: the static ``row_stride``, every 3rd reading of each asset, and
the validation rows held out and scored while it learns, as the tuning runs it); ``--fit_on train+validation,train``
runs both. ``--small`` first makes a small run to bench, FD001 with 2 trials (``predmaint run --profile cmapss
--subset FD001 --trials 2 --seed 0`` in a scratch home; its first trial is XGBoost's), instead of ``--run``.

Per host it prints the train rows it was given, its peak RSS (``VmHWM`` of its own memory, read as it exits:
``PEAK``; not the ``ru_maxrss`` of ``wait4``, which Linux floors at this script's own peak when the child was
started, as exec carries the forked memory's high-water mark over: about 500 MB once the train channel is
sharded at x4), that peak per row of the whole fleet's train+validation rows and per row the host holds (``held_rows``:
its part, every ``row_stride``-th reading of each asset in a trial, and the validation rows, which in a refit on
several hosts the first host alone reads and fits), its exit code and the mode ``model_meta.json`` records (``xgboost collective``, or ``gathered on the first host`` for a
candidate without a distributed fit); for the job, the wall seconds, the first host's objective line and
the SHA-256 of its model files. All hosts share this machine's cores, so the wall time is not a
multi-instance speed figure; each process's memory is what an instance must hold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import load  # noqa: E402

OBJECTIVE = re.compile(r"^final \[\d+\]\t(\S+)$", re.M)
#: runs ``argv[2:]`` (a script and its arguments) as ``python <script> ...`` would, and writes the process's
#: peak RSS in kB (``VmHWM``: this process's memory since its exec, nothing of its parent's) to ``argv[1]`` as it
#: exits
PEAK = """import atexit, os, runpy, sys
out, script = sys.argv[1], sys.argv[2]
def record():
    with open("/proc/self/status") as f:
        kb = next(line for line in f if line.startswith("VmHWM:")).split()[1]
    with open(out, "w") as f:
        f.write(kb)
atexit.register(record)
sys.argv, sys.path[0] = sys.argv[2:], os.path.dirname(os.path.abspath(script))
runpy.run_path(script, run_name="__main__")
"""


def host_names(n: int) -> list[str]:
    """N loopback host names that sort in rank order (the first runs the tracker and writes the model)."""
    if not 1 <= n <= 9:
        raise ValueError(f"--hosts takes 1 to 9 hosts, got {n}")
    return [f"127.0.0.{i}" for i in range(1, n + 1)]


def shard(train_dir: Path, hosts: list[str], out: Path) -> dict[str, tuple[Path, int]]:
    """Deal ``train_dir``'s rows by asset into one part file per host (contiguous blocks of whole assets,
    in file order); the feature spec and drift baseline go to the first host. Returns host -> (dir, rows)."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(train_dir.glob("*.parquet")))
    assets = table.column("_asset").to_numpy()
    order = list(dict.fromkeys(assets.tolist()))
    blocks = np.array_split(np.arange(len(order)), len(hosts))
    dirs: dict[str, tuple[Path, int]] = {}
    for i, (host, block) in enumerate(zip(hosts, blocks, strict=True)):
        d = out / host
        d.mkdir(parents=True)
        part = table.filter(pc.is_in(table.column("_asset"), value_set=pa_array([order[j] for j in block])))
        pq.write_table(part, d / f"part-{i}.parquet")
        dirs[host] = (d, part.num_rows)
    for name in ("feature_spec.json", "drift_baseline.json"):
        if (train_dir / name).is_file():
            shutil.copy(train_dir / name, dirs[hosts[0]][0] / name)
    return dirs


def pa_array(values: list[Any]) -> Any:
    import pyarrow as pa

    return pa.array(values)


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def held_rows(part: Path, stride: int, validation: int, fit_on: str, first: bool) -> int:
    """The rows a host holds: its part (``part``: a channel directory), only every ``stride``-th reading of
    each asset in a trial (``train.stride_mask``), and the ``validation`` rows, which a trial reads on every
    host and a refit on several hosts on the first host only (the one host of a refit holds them too)."""
    import pyarrow.parquet as pq

    from training_src.train import stride_mask

    table = pq.read_table(sorted(part.glob("*.parquet")), columns=["_asset"])
    rows = table.num_rows
    if fit_on == "train" and stride > 1:
        rows = int(stride_mask(table.column("_asset").to_numpy(), stride).sum())
    return rows + (validation if fit_on == "train" or first else 0)


def run_refit_command(run: Path, algorithm: str | None, seed: int) -> tuple[list[str], dict[str, str], str]:
    """The refit of the local run folder ``run`` as the runner starts it (``runner.refit_command`` on its
    plan.json and tuning.json): its best trial, or with ``algorithm`` that candidate's best trial; (the
    ``train.py`` arguments, the channel environment, the candidate)."""
    from predmaint import runner
    from training_src.profiles import load_profile

    plan = json.loads((run / "plan.json").read_text())
    tuning = json.loads((run / "tuning.json").read_text())
    if algorithm:
        best = (tuning.get("best_by_algorithm") or {}).get(algorithm)
        if not best:
            raise SystemExit(f"error: {run / 'tuning.json'} has no trial of {algorithm!r}")
        tuning = {**tuning, "best": {"algorithm": algorithm, "params": best["params"],
                                     "value": best.get("value", tuning["best"]["value"])}}
    prof = load_profile(plan["profile"], plan.get("subset") or None)
    argv, env = runner.refit_command(plan, tuning, prof.objective_metric, seed, run)
    return argv, env, tuning["best"]["algorithm"]


def run_hosts(run: Path, n: int, algorithm: str | None, seed: int, work: Path, timeout: float,
              fit_on: str = "train+validation") -> dict[str, Any]:
    """The refit of ``run`` (``fit_on`` "train": a trial of its candidate) on ``n`` local hosts: per-host peak
    RSS, exit code, mode, the rows it holds (``held_rows``); the job's wall time."""
    from predmaint import runner

    argv, env, algorithm = run_refit_command(run, algorithm, seed)
    argv[argv.index("--fit_on") + 1] = fit_on
    stride = int(argv[argv.index("--row_stride") + 1]) if "--row_stride" in argv else 1
    hosts = host_names(n)
    train_dir, validation = Path(env["SM_CHANNEL_TRAIN"]), Path(env["SM_CHANNEL_VALIDATION"])
    parts = shard(train_dir, hosts, work / "shards") if n > 1 else {hosts[0]: (train_dir, -1)}
    port, cpus = _free_port(), max(1, (os.cpu_count() or 1) // n)
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    started = time.perf_counter()
    for host in hosts:
        out = work / "out" / host
        out.mkdir(parents=True)
        # the refit's environment as the runner starts it (thread settings, libarrow's pool), then the host's
        henv = {**runner.script_environment(), **env, "SM_CHANNEL_TRAIN": str(parts[host][0]), "SM_CHANNEL_VALIDATION": str(validation),
                "SM_MODEL_DIR": str(out / "model"), "SM_OUTPUT_DATA_DIR": str(out / "output"),
                "SM_NUM_CPUS": str(cpus), "PREDMAINT_TRACKER_PORT": str(port),
                "PREDMAINT_TRACKER_TIMEOUT": str(int(timeout))}
        if n > 1:
            henv.update(SM_HOSTS=json.dumps(hosts), SM_CURRENT_HOST=host)
        log = (out / "log.txt").open("w")
        procs[host] = (subprocess.Popen([sys.executable, "-c", PEAK, str(out / "peak_kb"), *argv], env=henv, cwd=REPO,
                                        stdout=log,
                                        stderr=subprocess.STDOUT), out)
    validation_rows = sum(pq_rows(p) for p in sorted(validation.glob("*.parquet")))
    result: dict[str, Any] = {"hosts": n, "algorithm": algorithm, "fit_on": fit_on,
                              "per_host": []}
    for host, (proc, out) in procs.items():
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        text = (out / "log.txt").read_text()
        meta_file = out / "model" / "model_meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        result["per_host"].append({
            "host": host, "train_rows": parts[host][1], "exit_code": proc.returncode,
            "held_rows": held_rows(parts[host][0], stride, validation_rows, fit_on, host == hosts[0]),
            "peak_rss_mb": round(int((out / "peak_kb").read_text()) / 1024, 1) if (out / "peak_kb").is_file() else None, "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "mode": (meta.get("distributed") or {}).get("mode", "single host" if n == 1 else ""),
            "n_train": meta.get("n_train"),
            "objective": (OBJECTIVE.findall(text) or [None])[-1],
            "model_sha256": {p.relative_to(out / "model").as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                             for p in sorted((out / "model").rglob("*-model*")) if p.is_file()},
            "tail": [] if proc.returncode == 0 else text.strip().splitlines()[-5:]})
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def small_run(home: Path) -> Path:
    """FD001 with 2 trials, seed 0, through ``predmaint run`` in ``home`` (``PREDMAINT_DATA_DIR`` names the
    data): its run folder."""
    cli = Path(sys.executable).with_name("predmaint")
    subprocess.run([str(cli), "run", "--profile", "cmapss", "--subset", "FD001", "--trials", "2", "--seed", "0"],
                   env={**os.environ, "PREDMAINT_HOME": str(home)}, check=True, stdout=subprocess.DEVNULL)
    return next((home / "runs").iterdir())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="a local run folder (<home>/runs/<run-id>)")
    where.add_argument("--small", action="store_true", help="bench a new FD001 run with 2 trials")
    ap.add_argument("--hosts", default="1,2", help="comma-separated host counts (default 1,2)")
    ap.add_argument("--algorithm", default=None, help="refit the best trial of this candidate instead of the best")
    ap.add_argument("--fit_on", default="train+validation",
                    help="train+validation: the refit (default); train: a tuning trial of the same candidate; "
                         "both, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    modes = [m for m in args.fit_on.split(",") if m]
    if not modes or any(m not in ("train+validation", "train") for m in modes):
        ap.error(f"--fit_on takes train+validation and/or train, comma-separated, got {args.fit_on!r}")
    scratch = None
    if args.small:
        scratch = Path(tempfile.mkdtemp(prefix="predmaint-hosts-run-"))
        try:
            args.run = small_run(scratch)
        except (subprocess.CalledProcessError, StopIteration):
            shutil.rmtree(scratch, ignore_errors=True)
            ap.error("--small: `predmaint run --profile cmapss --subset FD001 --trials 2` failed "
                     "(is PREDMAINT_DATA_DIR set?)")
    try:
        return bench(ap, args, modes)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def bench(ap: argparse.ArgumentParser, args: argparse.Namespace, modes: list[str]) -> int:
    """The table for ``args.run`` (checked here), each of ``modes`` on each host count; 0 when every host exited 0."""
    for name in ("plan.json", "tuning.json", "processed/train", "processed/validation"):
        if not (args.run / name).exists():
            ap.error(f"--run {args.run} has no {name} (give a run folder of `predmaint run`)")
    try:
        counts = [int(c) for c in args.hosts.split(",") if c.strip()]
        for c in counts:
            host_names(c)
    except ValueError as exc:
        ap.error(f"--hosts: {exc}")
    import pyarrow.parquet as pq

    fleet = sum(pq.ParquetFile(p).metadata.num_rows for sub in ("train", "validation")
                for p in sorted((args.run / "processed" / sub).glob("*.parquet")))
    print(f"# hosts benchmark · {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} · {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()} · {load()} · {args.run.name}: "
          f"{fleet:,} train+validation rows", flush=True)
    print("| fit | hosts | host | train rows given | rows held | mode | peak RSS MB | KB per fleet row | "
          "KB per row held | CPU s | exit | wall s | objective |")
    print("|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|", flush=True)
    results, ok = [], True
    for fit_on, n in ((m, c) for m in modes for c in counts):
        work = Path(tempfile.mkdtemp(prefix=f"predmaint-hosts-{n}-"))
        try:
            r = run_hosts(args.run, n, args.algorithm, args.seed, work, args.timeout, fit_on)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results.append(r)
        for h in r["per_host"]:
            ok &= h["exit_code"] == 0
            # a host that gathers (the first of a candidate without a distributed fit) holds every row
            held = fleet if h["mode"].startswith("gathered") and h["host"] == r["per_host"][0]["host"] \
                else h["held_rows"]
            given = f"{h['train_rows']:,}" if n > 1 else "all"
            peak = h["peak_rss_mb"] or 0.0  # none recorded: the host did not exit normally (its exit code says)
            print(f"| {'refit' if fit_on == 'train+validation' else 'trial'} | {n} | {h['host']} | {given} | "
                  f"{held:,} | {h['mode']} | "
                  f"{peak:,} | {peak * 1024 / fleet:.2f} | {peak * 1024 / held:.2f} | "
                  f"{h['cpu_seconds']} | {h['exit_code']} | {r['wall_seconds']} | {h['objective'] or '-'} |", flush=True)
            for line in h["tail"]:
                print(f"  | {line}", file=sys.stderr)
    print(f"# at the end: {load()}")
    for r in results:
        first = r["per_host"][0]
        print(f"# {r['fit_on']}, {r['hosts']} host(s), {r['algorithm']}: model files {first['model_sha256']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
