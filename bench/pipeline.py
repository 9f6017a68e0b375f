"""Pipeline benchmark: wall time and peak memory per local pipeline stage, big-fleet
preprocessing, and fleet scoring throughput.

    PREDMAINT_DATA_DIR=/work/shared/data .venv/bin/python bench/pipeline.py --trials 50

1. ``predmaint run --profile cmapss --subset FD001 --trials N`` in a scratch home: each stage's wall
   time (from the runner's ``stage=... seconds=...`` log lines) and peak memory (the summed RSS of
   the whole process tree, sampled every 50 ms while the stage runs; trials are forks of the run's
   script server and share its pages, which this sum counts once per process, so it over-states);
   per-trial times; how many cores each stage kept busy (CPU seconds of the tree / wall seconds; 2
   trials run at once on 2 cores); the CPU seconds of the whole run (``RUSAGE_CHILDREN``).
2. ``preprocess.py`` on a fleet of at least 60,000 rows: FD001's training units repeated with new
   ids (and the test units likewise), written in the raw format to a scratch data directory.
3. Fleet scoring: ``scoring.score_frame`` (validate + features of every asset's last reading +
   prediction, one thread per core) on FD001's test units repeated to 10,000 assets, in memory; and
   ``predmaint score`` file to file on 2,000 assets (read + score + write).

Everything is bounded: the pipeline run by --timeout, the loops by their sizes. Load averages are
printed with each figure (the CPU may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import load  # noqa: E402

STAGE_RE = re.compile(r"stage=(?P<name>.+?) status=(?P<status>started|ok|failed)(?: seconds=(?P<s>[\d.]+))?")


class TreeSampler:
    """Samples the summed RSS and CPU time of a process and its descendants (psutil)."""

    def __init__(self, pid: int, interval: float = 0.05):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.stage: str | None = None
        self.peak: dict[str, int] = {}
        self.peak_process: dict[str, int] = {}  # the largest single process of the stage (its own RSS)
        self.cpu: dict[int, float] = {}  # pid -> last seen cpu seconds (user+system)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            rss = largest = 0
            for p in procs:
                try:
                    one = p.memory_info().rss
                    rss += one
                    largest = max(largest, one)
                    t = p.cpu_times()
                    self.cpu[p.pid] = t.user + t.system
                except psutil.Error:
                    continue
            if self.stage:
                self.peak[self.stage] = max(self.peak.get(self.stage, 0), rss)
                self.peak_process[self.stage] = max(self.peak_process.get(self.stage, 0), largest)
            self._stop.wait(self.interval)

    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


def bench_run(data_dir: Path, trials: int, timeout: float, subset: str = "FD001",
              extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One local pipeline run (profile cmapss, ``subset``, ``extra`` options such as ``--seed 0``) with
    per-stage wall time, peak memory of the process tree and of its largest process."""
    home = Path(tempfile.mkdtemp(prefix="predmaint-bench-home-"))
    load_at_start = load()
    env = {**os.environ, "PREDMAINT_DATA_DIR": str(data_dir), "PREDMAINT_LOG_LEVEL": "INFO"}
    cmd = [sys.executable, "-m", "predmaint", "--home", str(home), "run", "--profile", "cmapss", "--subset",
           subset, "--trials", str(trials), "--run-id", "bench", *extra]
    import resource

    started = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    stages: dict[str, dict[str, Any]] = {}
    cpu_at_start: dict[str, float] = {}
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    assert proc.stdout is not None
    tail: list[str] = []  # the run's last lines: what went wrong when it fails
    for line in proc.stdout:
        tail = [*tail[-4:], line.rstrip()]
        m = STAGE_RE.search(line)
        if not m:
            continue
        name = m["name"].split(" (")[0]
        if m["status"] == "started":
            sampler.stage = name
            cpu_at_start[name] = sampler.cpu_seconds()
            stages[name] = {"started": time.perf_counter()}
        else:
            st = stages.setdefault(name, {})
            st["seconds"] = float(m["s"]) if m["s"] else time.perf_counter() - st.get("started", started)
            st["cpu_seconds"] = sampler.cpu_seconds() - cpu_at_start.get(name, 0.0)
            st["status"] = m["status"]
            sampler.stage = None
    code = proc.wait()
    killer.cancel()
    sampler.stop()
    wall = time.perf_counter() - started
    # CPU of the whole run, every descendant included (each was waited for by its parent): unlike
    # wall time, this hardly depends on what else the machine is doing
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    # ru_maxrss of waited-for descendants: the peak RSS of the largest single process (KB on Linux), as
    # /usr/bin/time -v reports it; the earlier children of this process count too, so it is an upper bound
    max_rss_mb = round(ru1.ru_maxrss / 1024, 1)
    for name, st in stages.items():
        st.pop("started", None)
        st["peak_rss_mb"] = round(sampler.peak.get(name, 0) / 2**20, 1)
        st["peak_process_rss_mb"] = round(sampler.peak_process.get(name, 0) / 2**20, 1)
    tuning = json.loads((home / "runs" / "bench" / "tuning.json").read_text()) \
        if (home / "runs" / "bench" / "tuning.json").exists() else {}
    durations = [t["duration_s"] for t in tuning.get("trials", []) if t.get("duration_s") is not None]
    return {"exit_code": code, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "trials": trials,
            "max_rss_process_mb": max_rss_mb, "output_tail": tail if code else [],
            "stages": stages, "load_at_start": load_at_start,
            "parallel": tuning.get("parallel"), "trial_seconds": durations, "home": str(home), "load": load()}


def repeat_fleet(df: Any, copies: int, id_column: str) -> Any:
    """``copies`` copies of a fleet, each copy's ids shifted so every asset id is new."""
    import pandas as pd

    step = int(df[id_column].max()) + 1
    parts = []
    for k in range(copies):
        d = df.copy()
        d[id_column] = d[id_column] + k * step
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def write_raw(df: Any, path: Path) -> None:
    """A C-MAPSS style whitespace text file (gzip), columns in the profile's order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", compresslevel=1) as fh:
        df.to_csv(fh, sep=" ", header=False, index=False, float_format="%.6g")


def bench_big_preprocess(data_dir: Path, min_rows: int) -> dict[str, Any]:
    """preprocess.py on FD001 repeated to at least ``min_rows`` training rows."""
    import shutil

    import psutil

    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    profile = load_profile("cmapss", "FD001")
    train = read_table(resolve_file(data_dir, profile.file("train")), profile)
    test = read_table(resolve_file(data_dir, profile.file("test")), profile, allow_label=False)
    copies = -(-min_rows // len(train))
    big = Path(tempfile.mkdtemp(prefix="predmaint-bench-data-"))
    try:
        cols = list(profile.columns or train.columns)
        write_raw(repeat_fleet(train, copies, "unit")[cols], big / profile.file("train"))
        write_raw(repeat_fleet(test, copies, "unit")[[c for c in cols if c in test.columns]],
                  big / profile.file("test"))
        rul = resolve_file(data_dir, profile.file("test_rul"))
        text = (gzip.open(rul, "rt") if rul.suffix == ".gz" else open(rul)).read()  # noqa: SIM115
        with gzip.open(big / (profile.file("test_rul") + ".gz"), "wt") as fh:
            fh.write(text * copies)
        out = big / "out"
        cmd = [sys.executable, str(REPO / "training_src" / "preprocess.py"), "--profile", "cmapss", "--subset",
               "FD001", "--seed", "0", "--data-dir", str(big), "--input-dir", str(big / "input"),
               "--output-dir", str(out)]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
        ps, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None and time.perf_counter() - t < 900:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, ps.memory_info().rss)
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate()[1]
        seconds = time.perf_counter() - t
        return {"train_rows": len(train) * copies, "test_rows": len(test) * copies, "copies": copies,
                "exit_code": proc.returncode, "seconds": round(seconds, 2), "peak_rss_mb": round(peak / 2**20, 1),
                "rows_per_second": round(len(train) * copies / seconds), "load": load(),
                "stderr_tail": err.strip().splitlines()[-1:] if proc.returncode else []}
    finally:
        shutil.rmtree(big, ignore_errors=True)


def bench_scoring(data_dir: Path, model_dir: Path, assets: int, file_assets: int) -> dict[str, Any]:
    """Fleet scoring in memory on ``assets`` assets, and ``predmaint score`` file to file."""
    from predmaint import scoring
    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    profile = load_profile("cmapss", "FD001")
    test = read_table(resolve_file(data_dir, profile.file("test")), profile, allow_label=False)
    n_units = test["unit"].nunique()
    fleet = repeat_fleet(test, -(-assets // n_units), "unit")
    module, model = scoring.load_model(model_dir)
    scoring.score_frame(repeat_fleet(test, 1, "unit"), module, model)  # warm-up
    runs = []
    for _ in range(5):  # the median of 5: one run of < 1 s is at the mercy of the scheduler
        t = time.perf_counter()
        ids, _ = scoring.score_frame(fleet, module, model)
        runs.append(time.perf_counter() - t)
    seconds = sorted(runs)[len(runs) // 2]
    out: dict[str, Any] = {"assets": len(ids), "readings": len(fleet), "seconds": round(seconds, 3),
                           "runs_seconds": [round(r, 3) for r in runs],
                           "assets_per_second": round(len(ids) / seconds), "load": load()}
    tmp = Path(tempfile.mkdtemp(prefix="predmaint-bench-score-"))
    small = repeat_fleet(test, -(-file_assets // n_units), "unit")
    write_raw(small[list(profile.columns or small.columns)[:small.shape[1]]], tmp / "fleet.txt.gz")
    result = scoring.score_file(model_dir, tmp / "fleet.txt.gz", tmp / "scores.csv")
    out["file"] = {"assets": result.assets, "readings": result.readings, "read_seconds": round(result.read_seconds, 2),
                   "score_seconds": round(result.score_seconds, 3), "write_seconds": round(result.write_seconds, 3),
                   "assets_per_second_scoring": round(result.assets_per_second),
                   "assets_per_second_end_to_end": round(result.assets / (result.read_seconds + result.score_seconds
                                                                          + result.write_seconds)),
                   "load": load()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("PREDMAINT_DATA_DIR", "data")))
    ap.add_argument("--trials", type=int, default=50, help="tuning trials (default 50)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before the pipeline run is killed")
    ap.add_argument("--min-rows", type=int, default=60000, help="rows of the big preprocessing fleet")
    ap.add_argument("--score-assets", type=int, default=10000, help="assets for in-memory fleet scoring")
    ap.add_argument("--file-assets", type=int, default=2000, help="assets for file-to-file scoring")
    ap.add_argument("--skip-run", action="store_true", help="skip the pipeline run (needs --model-dir)")
    ap.add_argument("--model-dir", type=Path, default=None, help="model for scoring (default: the run's)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    print(f"pipeline benchmark · {time.strftime('%Y-%m-%d %H:%M:%S')} · {os.cpu_count()} CPUs · {load()}", flush=True)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count()}

    model_dir = args.model_dir
    if not args.skip_run:
        run = bench_run(args.data_dir, args.trials, args.timeout)
        results["run"] = run
        print(f"\nlocal pipeline, FD001, {args.trials} trials: {run['wall_seconds']} s wall, {run['cpu_seconds']} CPU-s "
              f"(all processes), exit {run['exit_code']}, {run['parallel']} trials in parallel · at start "
              f"{run['load_at_start']} · at end {run['load']}")
        for name, st in run["stages"].items():
            cores = st.get("cpu_seconds", 0) / st["seconds"] if st.get("seconds") else 0
            print(f"  {name:<60} {st.get('seconds', float('nan')):7.1f} s  peak {st['peak_rss_mb']:7.1f} MB  "
                  f"cores busy {cores:4.2f}")
        if run["trial_seconds"]:
            d = sorted(run["trial_seconds"])
            print(f"  per trial: median {d[len(d) // 2]:.1f} s, min {d[0]:.1f} s, max {d[-1]:.1f} s "
                  f"({len(d)} trials with a duration)")
        if model_dir is None:
            model_dir = Path(run["home"]) / "runs" / "bench" / "model"

    big = bench_big_preprocess(args.data_dir, args.min_rows)
    results["big_preprocess"] = big
    print(f"\npreprocess.py on {big['train_rows']:,} training rows (+{big['test_rows']:,} test rows; FD001 x"
          f"{big['copies']}): {big['seconds']} s, {big['rows_per_second']:,} rows/s, peak {big['peak_rss_mb']} MB, "
          f"exit {big['exit_code']} · {big['load']}")

    if model_dir is not None and (model_dir / "feature_spec.json").exists():
        sc = bench_scoring(args.data_dir, model_dir, args.score_assets, args.file_assets)
        results["scoring"] = sc
        f = sc["file"]
        print(f"\nfleet scoring in memory: {sc['assets']:,} assets ({sc['readings']:,} readings) in {sc['seconds']} s = "
              f"{sc['assets_per_second']:,} assets/s (median of runs {sc['runs_seconds']} s) · {sc['load']}")
        print(f"predmaint score file to file: {f['assets']:,} assets: read {f['read_seconds']} s, score "
              f"{f['score_seconds']} s ({f['assets_per_second_scoring']:,} assets/s), write {f['write_seconds']} s; "
              f"end to end {f['assets_per_second_end_to_end']:,} assets/s · {f['load']}")
    print(f"\ndone · {load()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
