"""Decisions benchmark: risk alerts and live quality on engines replayed to failure (local mode's code).

    .venv/bin/python bench/decisions.py [--subset FD001] [--folds 5] [--chunk 1] [--horizon 30]

The subset's training engines (run to failure) are split into ``--folds`` folds of consecutive ids
(FD001: 1-20, ..., 81-100). For each fold: a model is trained on the other engines (preprocess +
train.py as SageMaker runs them, 60 rounds, refit with interval calibration), the fold's engines are
replayed as a stream (``predmaint.streaming.run_stream``: ``--chunk`` readings per asset per record,
assets interleaved, one record per asset per batch) with the decision rule H = ``--horizon``,
costs 10:1 (threshold 0.1), and each engine's failure is recorded at its last cycle through
``predmaint outcome add``'s checks. Live quality (``training_src.stream.quality``) is read back from
the archive; RMSE and coverage are recomputed offline from the same archived answers (numpy) and
must be equal. Figures are pooled over every engine (each is replayed once).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import load  # noqa: E402
from stream import train  # noqa: E402  (bench/stream.py: the same training as the other benchmarks)

from predmaint import outcomes, streaming  # noqa: E402
from training_src.dataio import read_table, resolve_file  # noqa: E402
from training_src.profiles import load_profile  # noqa: E402
from training_src.stream import decisions, quality  # noqa: E402


def data_dir() -> Path:
    return Path(os.environ.get("PREDMAINT_DATA_DIR", REPO / "data"))


def fold_data(subset: str, held: set[int], out: Path) -> Path:
    """A data dir whose training file holds every engine but ``held`` (test files linked as they are)."""
    profile = load_profile("cmapss", subset)
    src = resolve_file(data_dir(), profile.file("train"))
    lines = [ln for ln in _read_text(src).splitlines() if ln.strip() and int(float(ln.split()[0])) not in held]
    (out / "cmapss").mkdir(parents=True)
    (out / "cmapss" / f"train_{subset}.txt").write_text("\n".join(lines) + "\n")
    for kind in ("test", "test_rul"):
        f = resolve_file(data_dir(), profile.file(kind))
        (out / "cmapss" / f.name).symlink_to(f)
    return out


def _read_text(path: Path) -> str:
    import gzip

    return gzip.open(path, "rt").read() if path.name.endswith(".gz") else path.read_text()


def run_fold(subset: str, fold: int, held: list[int], train_df, rule: decisions.Rule, chunk: int, work: Path
             ) -> tuple[list[dict], list[dict], list[dict], dict]:
    data = fold_data(subset, set(held), work / "data")
    model = train(subset, data, work / "train")
    scorer = streaming.in_process(model, f"fold{fold}")
    home = work / "home"
    df = train_df[train_df["unit"].isin(held)]
    items = streaming.numbered(streaming.fleet_records(df, "unit", chunk))
    with open(os.devnull, "w") as quiet:
        streaming.run_stream(home, items, scorer, scorer.info, batch=len(held), horizon=rule.horizon, rule=rule,
                             events_to=quiet)
        last = df.groupby("unit")["cycle"].max()
        raw = [(f"engine {int(u)}", {"asset_id": str(int(u)), "event": "failure", "time": int(t)})
               for u, t in last.items()]
        streaming.run_stream(home, outcomes.check_outcomes(home, raw, "cycle"), scorer, scorer.info, rule=rule,
                             events_to=quiet)
    answers, events, risk, last_seen = outcomes.read_quality_inputs(home)
    return answers, events, risk, last_seen


def offline(answers: list[dict], events: list[dict]) -> tuple[float, float]:
    """RMSE and coverage recomputed from the archived answers with numpy (not quality.py)."""
    fail = {(e["asset_id"], e["life"]): e["time"] for e in events if e["event"] == "failure"}
    rows = [(a["answer"]["rul"], a["answer"]["rul_lower"], a["answer"]["rul_upper"],
             fail[(a["asset_id"], a["life"])] - a["time"]) for a in answers if (a["asset_id"], a["life"]) in fail]
    p, lo, hi, y = (np.asarray(c, dtype=float) for c in zip(*rows, strict=True))
    return float(np.sqrt(np.mean((p - y) ** 2))), float(np.mean((lo <= y) & (y <= hi)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", default="FD001")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=1)
    ap.add_argument("--horizon", type=float, default=30.0)
    ap.add_argument("--lead", type=float, default=0.0, help="L: the lead an alert needs to count for recall")
    args = ap.parse_args(argv)
    profile = load_profile("cmapss", args.subset)
    train_df = read_table(resolve_file(data_dir(), profile.file("train")), profile)
    units = sorted(int(u) for u in train_df["unit"].unique())
    size = -(-len(units) // args.folds)
    rule = decisions.make_rule("rul_regression", horizon=args.horizon, cost_failure=10, cost_maintenance=1)
    started = time.time()
    all_answers, all_events, all_risk, all_seen = [], [], [], {}
    lines = []
    for k in range(args.folds):
        held = units[k * size:(k + 1) * size]
        with tempfile.TemporaryDirectory() as tmp:
            answers, events, risk, seen = run_fold(args.subset, k, held, train_df, rule, args.chunk, Path(tmp))
        q = quality.quality(answers, events, risk, horizon=rule.horizon, lead=args.lead, cap=profile.label.cap,
                            last_seen=seen)[f"fold{k}"]
        rmse, cov = offline(answers, events)
        assert abs(rmse - q["rmse"]) <= 1e-9 * rmse and cov == q["coverage"], (rmse, cov, q)
        lines.append(f"| {held[0]}-{held[-1]} | {q['failures']} | {q['alerts']} | {q['recall']:.3f} | "
                     f"{q['precision']:.3f} | {q['median_lead']:.1f} | {q['early_alerts']:.3f} | {q['rmse']:.2f} | "
                     f"{q['rmse_capped']:.2f} | {q['coverage']:.3f} |")
        print(lines[-1], flush=True)
        all_answers += answers
        all_events += events
        all_risk += risk
        all_seen.update(seen)
    pooled = quality.quality([dict(a, answer=dict(a["answer"], model_version="all")) for a in all_answers],
                             all_events, [dict(e, model_version="all") for e in all_risk], horizon=rule.horizon,
                             lead=args.lead, cap=profile.label.cap, last_seen=all_seen)["all"]
    rmse, cov = offline(all_answers, all_events)
    q = pooled
    print()
    print(f"{args.subset}, {args.folds} folds, chunk {args.chunk}, H = {rule.horizon:g}, threshold "
          f"{rule.threshold:g} (costs 10:1), L = {args.lead:g}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
          f"{platform.node()} ({os.cpu_count()} cores, {load()}), {time.time() - started:.0f} s")
    print()
    print("| engines | failures | alerts | recall | precision | median lead | early alerts (> 2H) | RMSE | "
          "RMSE capped | 80 % coverage |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
    print(f"| all | {q['failures']} | {q['alerts']} | {q['recall']:.3f} | {q['precision']:.3f} | "
          f"{q['median_lead']:.1f} | {q['early_alerts']:.3f} | {q['rmse']:.2f} | {q['rmse_capped']:.2f} | "
          f"{q['coverage']:.3f} |")
    print()
    print(f"offline from the same archived answers (numpy): RMSE {rmse:.6f} (live {q['rmse']:.6f}), "
          f"coverage {cov:.6f} (live {q['coverage']:.6f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
