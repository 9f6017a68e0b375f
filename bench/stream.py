"""Streaming benchmark: the stateful path in local mode (``predmaint stream``'s code, in-process endpoint).

    .venv/bin/python bench/stream.py [--model-dir PATH] [--assets 100000] [--chunk 10] [--rebuild]

1. Replay of the FD002 test engines (259 engines, six operating conditions) as a stream, ``--chunk``
   readings per asset per record, assets interleaved, batches of 500 records: state in SQLite,
   archive as JSON Lines, the endpoint's own ``handle`` in this process. Prints readings/s and
   answers/s (one answer per asset per batch it had readings in), the endpoint calls, and the
   readings per second of the process's CPU time (steadier than the wall clock when the 2 cores are
   shared). Then the cost on AWS per million readings and per 100,000 assets per month, from the
   list prices in ``bench/aws_prices.json`` and the measured sizes of a reading and of a state
   (``--replay-only`` stops here). ``--repeat N`` replays N times in the same process, each into a
   new home, and prints each replay's rates, also per second of user CPU time (without the kernel's
   time, which the archive's new folders and files make large and uneven on a busy machine).
2. A synthetic fleet of ``--assets`` assets (FD002 test engines' readings under new asset ids, one
   record of ``--chunk`` readings per asset, then one more record each): throughput of both passes,
   peak resident memory of the process, and the stored state's size per asset (the JSON ``doc``).

With ``--rebuild`` (instead of 1 and 2): how the rebuild after a promotion scales with fleet size and
history length. The FD002 test engines are streamed whole and, into a second home, with the first
half of each engine's readings; then ``rebuild.rebuild`` (the code of ``predmaint stream --rebuild``
and of the AWS rebuild job) builds every asset's summary from the archive, as for a new model (the
states' summaries are dropped first, so every asset is rebuilt), for all engines and for half of
them. Prints seconds, assets/s and readings/s of each.

Without ``--model-dir`` an FD002 model is trained first (preprocess + train.py as SageMaker runs it,
60 rounds, refit with interval calibration), which takes a minute or two. The machine's load is
printed (``machine.py``): the 2 cores may be shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import load  # noqa: E402

from predmaint import scoring, streaming  # noqa: E402
from training_src import preprocess  # noqa: E402
from training_src.profiles import load_profile  # noqa: E402
from training_src.stream import model_api, rebuild, state  # noqa: E402


def data_dir() -> Path:
    return Path(os.environ.get("PREDMAINT_DATA_DIR", REPO / "data"))


def train_fd002(out: Path) -> Path:
    return train("FD002", data_dir(), out)


def train(subset: str, data: Path, out: Path) -> Path:
    """A C-MAPSS ``subset`` model from the raw files under ``data``: preprocess + train.py as SageMaker runs
    them (60 rounds, refit on train+validation with interval calibration); returns its model dir."""
    frames, spec, manifest = preprocess.build_datasets(load_profile("cmapss", subset), data, seed=0)
    preprocess.write_outputs(out, frames, spec, manifest)
    model = out / "model"
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(out / "train"), "SM_CHANNEL_VALIDATION": str(out / "validation"),
           "SM_MODEL_DIR": str(model), "SM_OUTPUT_DATA_DIR": str(out / "output"), "SM_NUM_CPUS": "1"}
    subprocess.run([sys.executable, str(REPO / "training_src" / "train.py"), "--algorithm", "xgboost",
                    "--num_round", "60", "--max_depth", "5", "--eta", "0.1", "--fit_on", "train+validation"],
                   env=env, check=True, capture_output=True)
    return model


def state_bytes(home: Path) -> tuple[int, float]:
    db = sqlite3.connect(streaming.stream_dir(home) / "state.sqlite")
    n, total = db.execute("SELECT COUNT(*), SUM(LENGTH(doc)) FROM assets").fetchone()
    return n, total / n


PRICES = Path(__file__).with_name("aws_prices.json")
#: what the cost model assumes of AWS (not measured there): the Lambda's batch and its duration
LAMBDA_BATCH, LAMBDA_SECONDS, LAMBDA_GB = 500, 1.0, 1.0
HOURS = 730  # a month


def cost(region: str, reading_bytes: float, state_bytes: float, chunk: int, tail: int) -> dict[str, float] | None:
    """Dollars per million readings (records of ``chunk`` readings, each of another asset in its batch)
    and per 100,000 assets per month (one such record per asset per hour), from ``aws_prices.json``;
    None when the region has no price for an item."""
    import json
    import math

    table = json.loads(PRICES.read_text())["regions"][region]
    p = {k: v["value"] for k, v in table.items()}
    if any(v is None for v in p.values()):
        return None
    records = 1e6 / chunk
    billed = math.ceil((chunk * reading_bytes + 40) / 1024) * 1024  # Kinesis rounds each record up to 1 KB
    invocations = records / LAMBDA_BATCH
    out = {
        "kinesis in": records * billed / 1e9 * p["kinesis_gb_in"],
        "kinesis out": records * billed / 1e9 * p["kinesis_gb_out"],
        "lambda": invocations * (p["lambda_million_requests"] / 1e6 + LAMBDA_SECONDS * LAMBDA_GB * p["lambda_gb_second"]),
        "dynamodb writes": records * math.ceil(state_bytes / 1024) * p["dynamodb_million_wru"] / 1e6,
        "dynamodb reads": records * math.ceil(state_bytes / 4096) * p["dynamodb_million_rru"] / 1e6,
        "s3 puts": 2 * records * p["s3_thousand_puts"] / 1e3,  # readings and answers partitions
        "endpoint data": records * (tail + chunk) * reading_bytes / 1e9 * p["endpoint_gb_in"],
    }
    per_million = sum(out.values())
    readings = 100_000 * chunk * HOURS
    fixed = HOURS * (p["kinesis_stream_hour"] + p["endpoint_instance_hour"])
    states = 100_000 * state_bytes / 1e9 * (p["dynamodb_gb_month"] + p["dynamodb_pitr_gb_month"])
    out.update({"per million readings": per_million, "fixed per month": fixed, "states per month": states,
                "per 100,000 assets per month": per_million * readings / 1e6 + fixed + states})
    return out


def print_cost(reading_bytes: float, state_bytes: float, chunk: int, tail: int) -> None:
    print(f"AWS cost (list prices in {PRICES.name}; a reading {reading_bytes:,.0f} bytes of JSON, a state "
          f"{state_bytes:,.0f} bytes, records of {chunk}, Lambda batches of {LAMBDA_BATCH} at {LAMBDA_SECONDS:g} s "
          f"x {LAMBDA_GB:g} GB assumed)")
    for region in ("us-east-1", "eu-west-1"):
        c = cost(region, reading_bytes, state_bytes, chunk, tail)
        if c is None:
            print(f"  {region}: no checked prices in {PRICES.name}")
            continue
        items = ", ".join(f"{k} ${v:.3f}" for k, v in c.items() if k not in ("per million readings",
                                                                               "per 100,000 assets per month"))
        print(f"  {region}: ${c['per million readings']:.2f} per million readings; "
              f"${c['per 100,000 assets per month']:,.0f} per 100,000 assets per month ({items})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--assets", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--rebuild", action="store_true", help="measure the rebuild instead (fleet size, history)")
    ap.add_argument("--replay-only", action="store_true", help="the FD002 replay and the costs, no synthetic fleet")
    ap.add_argument("--repeat", type=int, default=1, help="replay the FD002 test engines this many times, "
                    "each into a new home, in this process (the rates of each printed)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error(f"--repeat: must be 1 or more (got {args.repeat})")
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    model_dir = args.model_dir or train_fd002(work / "fd002")
    scorer = model_api.InProcessScorer(model_api.load_model(model_dir))
    info = scorer.info
    profile = load_profile("cmapss", "FD002")
    df = scoring.read_fleet(data_dir() / "cmapss" / "test_FD002.txt.gz", profile)
    print(f"# stream benchmark  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  "
          f"{platform.node()} {os.cpu_count()} cpus  python {platform.python_version()}  {load()}")

    if args.rebuild:
        bench_rebuild(work, df, scorer, info, args.chunk)
        return
    records = list(streaming.fleet_records(df, "unit", args.chunk))
    for k in range(args.repeat):  # each replay into a new home; the figures below are the last one's
        home = work / f"replay-{k}"
        t0, c0, u0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
        s = streaming.run_stream(home, streaming.numbered(records), scorer, info, batch=500, horizon=30)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        user = resource.getrusage(resource.RUSAGE_SELF).ru_utime - u0
        if args.repeat > 1:
            print(f"replay {k + 1}/{args.repeat}: {s.readings / dt:,.0f} readings/s, {s.readings / cpu:,.0f} "
                  f"readings/s of CPU time, {s.readings / user:,.0f} of user CPU time")
    answers = sum(1 for _ in (streaming.stream_dir(home) / "archive" / "answers").rglob("*.jsonl"))
    n_answers = sum(len(p.read_text().splitlines()) for p in (streaming.stream_dir(home) / "archive" /
                                                               "answers").rglob("*.jsonl"))
    print(f"FD002 test replay, chunks of {args.chunk}: {s.records} records, {s.readings} readings, "
          f"{s.assets} assets, {s.batches} batches, {s.calls} endpoint calls, {answers} answer files")
    print(f"  {dt:.1f} s: {s.readings / dt:,.0f} readings/s, {n_answers / dt:,.0f} answers/s "
          f"({n_answers} answers); CPU {cpu:.2f} s: {s.readings / cpu:,.0f} readings/s of CPU time  {load()}")
    import orjson

    reading_bytes = sum(len(orjson.dumps(r)) for rec in records for r in rec["readings"]) / s.readings
    print_cost(reading_bytes, state_bytes(home)[1], args.chunk, info.window - 1)
    if args.replay_only:
        return

    # synthetic fleet: every asset one record of `chunk` readings, then one more record each
    rows = {u: g.drop(columns=["unit"]).to_dict("records") for u, g in df.groupby("unit")}
    engines = [r for r in rows.values() if len(r) > args.chunk + 1]
    home = work / "fleet"
    for label, part in (("first records", slice(0, args.chunk)), ("next records", slice(args.chunk, args.chunk + 1))):
        recs = ({"asset_id": f"a{i}", "readings": engines[i % len(engines)][part]} for i in range(args.assets))
        start = 0 if label == "first records" else args.assets
        t0 = time.perf_counter()
        s = streaming.run_stream(home, ((f"record {start + i}", start + i, r) for i, r in enumerate(recs, 1)),
                                 scorer, info, batch=1000, horizon=30)
        dt = time.perf_counter() - t0
        print(f"synthetic fleet of {args.assets:,} assets, {label}: {s.readings:,} readings in {dt:.1f} s: "
              f"{s.readings / dt:,.0f} readings/s, {args.assets / dt:,.0f} assets/s")
    n, per = state_bytes(home)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  state: {n:,} assets, {per:,.0f} bytes per asset (JSON doc, tail of {info.window - 1} readings); "
          f"peak RSS {rss:,.0f} MB; SQLite file {(streaming.stream_dir(home) / 'state.sqlite').stat().st_size / 1e6:,.0f} MB")
    print(f"  {load()}")


def bench_rebuild(work: Path, df, scorer, info, chunk: int) -> None:
    """Rebuild times of the FD002 test engines: whole histories and half histories, all engines and half."""
    size = df.groupby("unit")["unit"].transform("size")
    half = df[df.groupby("unit").cumcount() < (size // 2).clip(lower=1)]
    for label, fleet in (("whole histories", df), ("first half of each history", half)):
        home = work / label.replace(" ", "-")
        streaming.run_stream(home, streaming.numbered(list(streaming.fleet_records(fleet, "unit", chunk))),
                             scorer, info, batch=500, horizon=30)
        root = streaming.stream_dir(home)
        arch = streaming.LocalArchive(root / "archive")
        states = [state.AssetState(**{**s.__dict__, "summaries": {}})  # as for a model without summaries
                  for s in streaming.StateStore(root / "state.sqlite").all() if isinstance(s, state.AssetState)]
        for n in (len(states), len(states) // 2):
            part = states[:n]
            readings = sum(s.taken for s in part)
            t0 = time.perf_counter()
            res = rebuild.rebuild(part, arch.lines_of, scorer, info, horizon=30)
            dt = time.perf_counter() - t0
            assert len(res.states) == n and not res.errors, res.errors
            print(f"rebuild, {label}: {n} assets, {readings:,} readings ({readings / n:.0f} per asset): "
                  f"{dt:.2f} s, {n / dt:,.0f} assets/s, {readings / dt:,.0f} readings/s")
    print(f"  {load()}")


if __name__ == "__main__":
    main()
