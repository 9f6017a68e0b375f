"""Scale benchmark: the local pipeline on C-MAPSS FD002's training fleet replicated x1, x4 (and x16).

    PREDMAINT_DATA_DIR=/work/shared/data .venv/bin/python bench/scale.py [--sizes 1,4] [--x16]

For each size N: FD002's training engines are written N times to a scratch data directory in the raw
format (copy 0 is FD002 itself; copies 1..N-1 get new unit ids and every sensor reading multiplied by
``1 + 0.0005 * z``, z standard normal, seeded: 0.05 % multiplicative noise, so no two engines are
byte copies; operating settings are left alone, so the regimes are FD002's). The test file and its RUL
file are copied unchanged. Then ``predmaint run --profile cmapss --subset FD002 --trials 4 --seed 0``
runs in a scratch home (``bench/pipeline.py``'s ``bench_run``) and the benchmark records, per stage,
the wall time (the runner's ``stage=... seconds=...`` log lines), the peak RSS of the stage's largest
single process (psutil, sampled every 50 ms; the tuning trials are forks of the run's script server, so
theirs includes the anonymous pages they share with it; preprocessing, the refit and the evaluation are
fresh interpreters, as on SageMaker) and of the whole process tree, and for the run the largest
process's peak as ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (what ``/usr/bin/time -v`` prints). From
these: memory per training row (largest process / training rows of the replicated fleet), the
refit's share of the pipeline time, preprocessing rows per second, and the test RMSE and interval
coverage the run's evaluation reports.

Memory per row is given three ways, because a fixed part of every stage's peak does not grow with the
fleet: (1) the largest process's peak over the training rows, libraries included (what an instance
must hold); (2) the same above the stage's **library floor**, the RSS of a process that has imported what
the stage's process imports (``STAGE_IMPORTS``): for preprocessing, the refit and the evaluation, which
the runner starts as fresh interpreters (as SageMaker does), a fresh interpreter with the script's modules
and the libraries its fits and plots load (the refit's those of the candidate it refits); for a tuning
trial, a fork of an interpreter that imported the script server's ``predmaint.zygote.PRELOAD`` (a fork's
RSS holds the server's anonymous pages but only the library file pages the fork itself touches);
(3) with more than one size, the **marginal** cost: the growth of each stage's peak per added training
row from one size to the next, which is what decides the largest fleet an instance holds.

x16 (860,144 training rows) takes about half an hour and several GB on a 2-core machine: it runs only
with ``--x16`` (or ``--sizes 1,4,16``). ``--preprocess-only`` runs the preprocessing stage alone on each
fleet and prints its wall and CPU seconds (all threads), rows per second of each, and peak RSS. Results print as a Markdown table, with date, machine and load.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import load  # noqa: E402
from pipeline import bench_run, write_raw  # noqa: E402

from training_src import processing  # noqa: E402
from training_src.threads import job_environment  # noqa: E402

NOISE = 0.0005  # 0.05 % multiplicative noise on the sensors of every added copy
SUBSET = "FD002"
STAGES = {"preprocess": "preprocess", "tuning": "tuning", "refit": "refit", "evaluate": "evaluate"}


def replicate(train: Any, copies: int, id_column: str, sensors: list[str], seed: int = 0) -> Any:
    """``copies`` copies of a training fleet: copy 0 as is, each further copy with new asset ids and its
    sensor columns multiplied by ``1 + NOISE * z`` (z standard normal, one seeded draw per reading)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    step = int(train[id_column].max()) + 1
    parts = [train]
    for k in range(1, copies):
        d = train.copy()
        d[id_column] = d[id_column] + k * step
        d[sensors] = d[sensors].to_numpy() * (1.0 + NOISE * rng.standard_normal((len(d), len(sensors))))
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def make_fleet(data_dir: Path, copies: int, out: Path) -> int:
    """Write the replicated FD002 fleet (and the unchanged test files) under ``out``; returns training rows."""
    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    profile = load_profile("cmapss", SUBSET)
    train = read_table(resolve_file(data_dir, profile.file("train")), profile)
    cols = list(profile.columns or train.columns)
    fleet = replicate(train, copies, profile.id_column, list(profile.sensor_columns))
    write_raw(fleet[cols], out / (profile.file("train") + ".gz"))  # gzip, as the shipped files
    for role in ("test", "test_rul"):
        src = resolve_file(data_dir, profile.file(role))
        dst = out / Path(profile.file(role)).parent / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return len(fleet)


def evaluation(home: Path) -> dict[str, Any]:
    """The run's test metrics (evaluation.json) and the model file's SHA-256."""
    import hashlib

    run = home / "runs" / "bench"
    out: dict[str, Any] = {}
    for p in sorted(run.rglob("evaluation.json")):
        out["evaluation"] = json.loads(p.read_text())
        break
    model = run / "model" / "xgboost-model"
    if model.is_file():
        out["model_sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    tuning = run / "tuning.json"
    if tuning.is_file():  # the candidate the refit fitted (its libraries are the refit's floor)
        out["algorithm"] = json.loads(tuning.read_text()).get("best", {}).get("algorithm")
    return out


#: what each stage's process imports (its library floor): preprocessing, the refit and the evaluation are
#: fresh interpreters running their script, which import the script's modules and, while they work, the
#: libraries of their fits (preprocessing: XGBoost's proxy fits, k-means) and plots; the refit imports
#: those of the candidate it refits (``CANDIDATE_LIBRARIES``). A tuning trial is a fork of the run's
#: script server, which imported ``predmaint.zygote.PRELOAD`` (None here: read from there).
STAGE_IMPORTS: dict[str, tuple[str, ...] | None] = {
    "preprocess": ("training_src.preprocess", "xgboost", "sklearn.cluster"),
    "tuning": None,
    "refit": ("training_src.train",),
    "evaluate": ("training_src.evaluate", "xgboost", "matplotlib.pyplot"),
}
CANDIDATE_LIBRARIES = {"hgb": ("sklearn.ensemble",), "xgboost": ("xgboost",), "linear": ("sklearn.linear_model",)}


def stage_imports(stage: str, algorithm: str | None = None) -> tuple[tuple[str, ...], bool]:
    """(modules, forked) of a stage's process: what it imports, and whether it is a fork of the script
    server (a tuning trial) rather than a fresh interpreter. ``algorithm``: the refitted candidate."""
    if stage == "tuning":
        from predmaint.zygote import PRELOAD

        return tuple(PRELOAD), True
    return (*(STAGE_IMPORTS[stage] or ()), *(CANDIDATE_LIBRARIES.get(algorithm or "", ()) if stage == "refit" else ())), \
        False


def library_floor_mb(modules: tuple[str, ...], forked: bool = False) -> float:
    """RSS (MB) of a fresh interpreter after importing ``modules`` (the script server's import loop), or
    with ``forked`` of a fork of it (what a forked stage script holds before it does anything: the
    parent's anonymous pages, not the library file pages it has not touched): the part of a stage's peak
    that does not depend on the fleet."""
    import subprocess

    code = ("import contextlib, gc, importlib, os, sys\n"
            "os.environ.setdefault('MPLBACKEND', 'Agg')\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "for name in sys.argv[3:]:\n"
            "    with contextlib.suppress(Exception):\n"
            "        importlib.import_module(name)\n"
            "def rss():\n"
            "    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
            "if sys.argv[2] == 'fork':\n"
            "    gc.collect()\n"
            "    gc.freeze()\n"
            "    r, w = os.pipe()\n"
            "    if os.fork() == 0:\n"
            "        os.write(w, str(rss()).encode())\n"
            "        os._exit(0)\n"
            "    os.close(w)\n"
            "    print(os.read(r, 64).decode())\n"
            "else:\n"
            "    print(rss())\n")
    # the environment a stage's process starts with (libarrow's pool, read when pyarrow loads)
    out = subprocess.run([sys.executable, "-c", code, str(REPO), "fork" if forked else "fresh", *modules], cwd=REPO,
                         env=job_environment(os.environ), capture_output=True, text=True, check=True, timeout=300)
    return round(int(out.stdout.split()[-1]) / 2**20, 1)


def stage_floors(algorithm: str | None, cache: dict[tuple[tuple[str, ...], bool], float]) -> dict[str, float]:
    """Each stage's library floor (MB) for a run whose refit fitted ``algorithm``; ``cache`` keeps those
    measured (one measurement per import list)."""
    floors = {}
    for stage in STAGES:
        key = stage_imports(stage, algorithm)
        if key not in cache:
            cache[key] = library_floor_mb(*key)
        floors[stage] = cache[key]
    return floors


def marginal(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pair of consecutive sizes: each stage's peak growth in KB per added training row."""
    out = []
    for a, b in itertools.pairwise(rows):
        added = b["training_rows"] - a["training_rows"]
        m: dict[str, Any] = {"from": a["size"], "to": b["size"], "added_rows": added}
        for s in STAGES:
            if a.get(f"{s}_peak_mb") is not None and b.get(f"{s}_peak_mb") is not None and added > 0:
                m[f"{s}_kb_per_added_row"] = round((b[f"{s}_peak_mb"] - a[f"{s}_peak_mb"]) * 1024 / added, 2)
        out.append(m)
    return out


def memory_table(rows: list[dict[str, Any]], floors: dict[str, float] | float) -> str:
    """Markdown: KB per training row of each stage's largest process, with the libraries and above the
    stage's library floor (each row's ``<stage>_floor_mb``, else ``floors``: per stage, or one for all, as
    the JSON of earlier versions of this script holds it), then the marginal KB per added row between
    consecutive sizes."""
    def floor(r: dict[str, Any], s: str) -> float:
        return r.get(f"{s}_floor_mb") or (floors if isinstance(floors, (int, float)) else floors[s])

    lines = ["| fleet | library floor MB (what the stage's process imports): " + " / ".join(STAGES)
             + " | KB per training row, libraries included | above the floor |", "|---|---|---|---|"]
    for r in rows:
        incl = " / ".join(f"{r.get(f'{s}_kb_per_row', 0):.2f}" for s in STAGES)
        above = " / ".join(f"{max(0.0, (r.get(f'{s}_peak_mb') or 0) - floor(r, s)) * 1024 / r['training_rows']:.2f}"
                           for s in STAGES)
        lines.append(f"| x{r['size']} | {' / '.join(f'{floor(r, s)}' for s in STAGES)} | {incl} | {above} |")
    for m in marginal(rows):
        lines.append(f"| x{m['from']} → x{m['to']}, per added row | | "
                     + " / ".join(f"{m.get(f'{s}_kb_per_added_row', float('nan')):.2f}" for s in STAGES) + " | |")
    return "\n".join(lines)


def stage_of(name: str) -> str | None:
    return next((short for short, prefix in STAGES.items() if name.startswith(prefix)), None)


def summarise(size: int, rows: int, run: dict[str, Any]) -> dict[str, Any]:
    """One table row: seconds and peak MB per stage, bytes per training row, shares and rates."""
    row: dict[str, Any] = {"size": size, "training_rows": rows, "wall_seconds": run["wall_seconds"],
                           "exit_code": run["exit_code"], "max_rss_process_mb": run.get("max_rss_process_mb")}
    for name, st in run["stages"].items():
        short = stage_of(name)
        if short:
            row[f"{short}_seconds"] = st.get("seconds")
            # CPU seconds of the stage's processes: on a shared machine, less at the mercy of the load
            row[f"{short}_cpu_seconds"] = round(st.get("cpu_seconds", 0), 1)
            row[f"{short}_peak_mb"] = st.get("peak_process_rss_mb")
            row[f"{short}_tree_peak_mb"] = st.get("peak_rss_mb")
            row[f"{short}_kb_per_row"] = round(st.get("peak_process_rss_mb", 0) * 1024 / rows, 2)
    for short, floor in (run.get("floors") or {}).items():
        row[f"{short}_floor_mb"] = floor
    row["algorithm"] = run.get("algorithm")
    pipeline = sum(row.get(f"{s}_seconds") or 0 for s in STAGES)
    row["pipeline_seconds"] = round(pipeline, 1)
    if pipeline and row.get("refit_seconds"):
        row["refit_share"] = round(row["refit_seconds"] / pipeline, 3)
    ev = run.get("evaluation", {})
    if ev:
        row["test_rmse"] = round(ev["regression_metrics"]["rmse"]["value"], 2)
        row["test_nasa"] = round(ev["nasa_score"])
    row["model_sha256"] = run.get("model_sha256")
    cpu = sum(row.get(f"{s}_cpu_seconds") or 0 for s in STAGES)
    if cpu and row.get("refit_cpu_seconds"):
        row["refit_cpu_share"] = round(row["refit_cpu_seconds"] / cpu, 3)
    if row.get("preprocess_seconds"):
        row["preprocess_rows_per_second"] = round(rows / row["preprocess_seconds"])
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: wall seconds (CPU seconds) per stage, the refit's share, peak MB of each stage's largest
    process, and the largest of them per training row."""
    lines = ["| fleet | training rows | preprocess s (rows/s) | tuning s | refit s (share; CPU share) | evaluate s | "
             "total s | peak MB: preprocess / trial / refit / evaluate | KB per row (max) | test RMSE · NASA |",
             "|" + "---|" * 10]

    def sec(r: dict[str, Any], s: str) -> str:
        return f"{r.get(f'{s}_seconds')} ({r.get(f'{s}_cpu_seconds')} CPU)"

    for r in rows:
        kb = max(r.get(f"{s}_kb_per_row", 0) for s in STAGES)
        lines.append(
            f"| x{r['size']} | {r['training_rows']:,} | {sec(r, 'preprocess')} {r.get('preprocess_rows_per_second', 0):,}"
            f"/s | {sec(r, 'tuning')} | {sec(r, 'refit')}; {100 * r.get('refit_share', 0):.0f} %; "
            f"{100 * r.get('refit_cpu_share', 0):.0f} % | {sec(r, 'evaluate')} | {r['pipeline_seconds']} | "
            + " / ".join(f"{r.get(f'{s}_peak_mb')}" for s in STAGES)
            + f" | {kb:.2f} | {r.get('test_rmse')} · {r.get('test_nasa')} |")
    return "\n".join(lines)


def preprocess_only(data_dir: Path, out: Path, timeout: float) -> dict[str, Any]:
    """The preprocessing stage alone (``python -m training_src.preprocess`` in a processing job's
    environment, FD002) on ``data_dir``:
    wall seconds, CPU seconds (user + system, all its threads) and peak RSS (``ru_maxrss``), as
    ``/usr/bin/time -v`` reports them, with the load before and after."""
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    at_start, t = load(), time.perf_counter()
    # started as a processing job starts it (training_src/processing.py, without its pip step)
    proc = subprocess.run(processing.command(["preprocess.py", "--profile", "cmapss", "--subset", SUBSET,
                                              "--data-dir", str(data_dir), "--output-dir", str(out)], REPO),
                          env=processing.environment(REPO), cwd=REPO, timeout=timeout, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"exit_code": proc.returncode, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            # ru_maxrss of the children is the largest child's so far: sizes run in ascending order
            "max_rss_mb": round(after.ru_maxrss / 1000), "load_at_start": at_start, "load": load(),
            "output_tail": (proc.stdout + proc.stderr).strip().splitlines()[-3:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("PREDMAINT_DATA_DIR", "data")))
    ap.add_argument("--sizes", default="1,4", help="comma-separated replication factors (default 1,4)")
    ap.add_argument("--x16", action="store_true", help="add x16 (about 30 minutes, several GB)")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds before one run is killed")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--table", type=Path, default=None, help="only print the table of an earlier --json file")
    ap.add_argument("--preprocess-only", action="store_true",
                    help="run the preprocessing stage alone on each fleet: wall and CPU seconds, rows per "
                         "second of each, peak RSS")
    args = ap.parse_args(argv)
    if args.table:
        saved = json.loads(args.table.read_text())
        rows = [summarise(r["summary"]["size"], r["summary"]["training_rows"], r["run"]) for r in saved if "run" in r]
        print(table(rows))
        floor = next((r["library_floor_mb"] for r in saved if "library_floor_mb" in r), None)
        if floor is not None or all(r.get("floors") for r in saved if "run" in r):
            print()
            print(memory_table(rows, floor or {}))
        return 0
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()} | ({16} if args.x16 else set()))
    except ValueError:
        ap.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not sizes or min(sizes) < 1 or max(sizes) > 64:
        ap.error("--sizes must lie between 1 and 64")
    print(f"# scale benchmark · {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} · {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()} · {load()}", flush=True)
    if args.preprocess_only:
        print("| fleet | training rows | wall s | CPU s | rows per wall s | rows per CPU s | peak RSS MB | load at start · end |")
        print("|---|---:|---:|---:|---:|---:|---:|---|", flush=True)
        failed = False
        for size in sizes:
            scratch = Path(tempfile.mkdtemp(prefix=f"predmaint-scale-x{size}-"))
            try:
                n = make_fleet(args.data_dir, size, scratch / "data")
                r = preprocess_only(scratch / "data", scratch / "out", args.timeout)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            failed |= r["exit_code"] != 0
            print(f"| x{size} | {n:,} | {r['wall_seconds']} | {r['cpu_seconds']} | {n / r['wall_seconds']:,.0f} | "
                  f"{n / max(r['cpu_seconds'], 1e-9):,.0f} | {r['max_rss_mb']:,} | {r['load_at_start']} · {r['load']} |",
                  flush=True)
            if r["exit_code"]:
                print("\n".join(r["output_tail"]), file=sys.stderr)
        return 1 if failed else 0
    floors: dict[tuple[tuple[str, ...], bool], float] = {}  # import list -> its library floor, measured once
    rows, results = [], []
    for size in sizes:
        scratch = Path(tempfile.mkdtemp(prefix=f"predmaint-scale-x{size}-"))
        try:
            n = make_fleet(args.data_dir, size, scratch / "data")
            run = bench_run(scratch / "data", args.trials, args.timeout, SUBSET, ("--seed", str(args.seed)))
            run.update(evaluation(Path(run["home"])))
            shutil.rmtree(run["home"], ignore_errors=True)
            run["floors"] = stage_floors(run.get("algorithm"), floors)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        row = summarise(size, n, run)
        rows.append(row)
        results.append({"summary": row, "run": run})
        print(f"x{size}: {n:,} training rows, exit {run['exit_code']}, {run['wall_seconds']} s wall, "
              f"largest process {run.get('max_rss_process_mb')} MB · at start {run['load_at_start']} · at end "
              f"{run['load']}", flush=True)
        for name, st in run["stages"].items():
            print(f"  {name:<62} {st.get('seconds', float('nan')):7.1f} s  largest process "
                  f"{st['peak_process_rss_mb']:7.1f} MB  tree {st['peak_rss_mb']:7.1f} MB", flush=True)
        print(f"  model sha256 {run.get('model_sha256', '-')}; refit {run.get('algorithm')}; library floors MB "
              + " / ".join(f"{s} {run['floors'][s]}" for s in STAGES), flush=True)
        for line in run.get("output_tail", []):
            print(f"  | {line}", flush=True)
    print()
    print(table(rows))
    print()
    print(memory_table(rows, {}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
