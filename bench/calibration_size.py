"""How many held-out assets the RUL interval calibration needs: the spread of coverage of calibrations on n assets.

Usage: ``python bench/calibration_size.py [--subsets FD001,FD002] [--sizes 50,100,200,400,800,1600]
[--splits 10] [--draws 40] [--seed 0] [--work DIR]``.

For each subset: ``preprocess.py`` (the run's split and features; kept in ``--work`` when given, with the
held-out predictions), then the held-out predictions the refit's calibration makes
(``train.held_out_predictions`` with every fold fitted: each training asset predicted by the model fitted
with the same hyperparameters on the other folds' assets; the fixed hyperparameters of
``bench/intervals.py``, ``FIXED``). Training data only: the test engines are not read.

Then ``--splits`` times the assets are halved at random: the scoring half, and the pool the calibrations
are drawn from. For each size n, ``--draws`` calibrations each on n assets drawn from the pool with
replacement (a drawn twice asset counts as two assets: n draws from the pool's distribution of assets, so
n may exceed the pool) are fitted as the refit fits them (``intervals.fit`` on the assets' eligible
readings) and scored on the scoring half (every eligible reading, each asset once: the test protocol's
expectation over its cuts, as ``intervals`` weighs them). Within a split every draw is scored on the same
assets, so the spread of their coverage is the calibration's own (what the number of calibrating assets
changes), not the scoring half's sampling noise, which moves all of a split's draws together.
Both callers: the window alone and with a life summary (their own calibrations).

Prints Markdown: per subset, caller and n, the mean coverage of the 80 % interval over every draw and
split, the standard deviation of coverage within a split (pooled over splits), the half-width of the
central 90 % of draws around their split's mean (1.645 s.d.), the share of draws within +-1.5 points of
their split's mean, and the mean width.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from intervals import FIXED  # noqa: E402  (bench/intervals.py: the fixed refit hyperparameters)
from machine import load  # noqa: E402

from training_src import candidates  # noqa: E402
from training_src import features as F  # noqa: E402
from training_src import train as T  # noqa: E402
from training_src.candidates.base import from_wire  # noqa: E402
from training_src.predmaint_serving import intervals as IV  # noqa: E402

TOLERANCE = 0.015  # +-1.5 points


def held_out(subset: str, data_dir: Path, work: Path, seed: int) -> dict[str, np.ndarray]:
    """The refit calibration's held-out predictions (every fold fitted) of ``subset``'s eligible rows:
    ``pred``, ``pred_life`` (absent without life features), ``true``, ``asset``; cached in ``work``."""
    cache = work / subset / f"held-out-seed{seed}.npz"
    if cache.exists():
        return dict(np.load(cache))
    data = work / subset / "data"
    if not (data / "train" / "feature_spec.json").exists():
        subprocess.run([sys.executable, str(REPO / "training_src" / "preprocess.py"), "--profile", "cmapss",
                        "--subset", subset, "--seed", str(seed), "--data-dir", str(data_dir),
                        "--output-dir", str(data)], check=True, capture_output=True)
    spec = F.FeatureSpec.from_json((data / "train" / "feature_spec.json").read_text())
    frames = [T.read_channel(data / "train"), T.read_channel(data / "validation")]
    algorithm = FIXED["algorithm"]
    hp = from_wire(candidates.get(algorithm).PARAMS, {k: v for k, v in FIXED.items() if k != "algorithm"})
    h = T.held_out_predictions(algorithm, frames, spec.feature_names, spec, hp, os.cpu_count() or 1, seed,
                               every_fold=True)
    if h is None:
        raise SystemExit(f"{subset}: no interval calibration for this spec")
    e = h.eligible
    out = {"pred": h.pred[e], "true": h.true[e], "asset": h.asset[e]}
    if h.pred_life is not None:
        out["pred_life"] = h.pred_life[e]
    np.savez(cache, **out)
    return out


def score(pred: np.ndarray, true: np.ndarray, asset: np.ndarray, doc: dict) -> tuple[float, float]:
    """Coverage and mean width of a calibration document on rows (each asset once)."""
    lo, hi = IV.Calibration.from_doc(doc).interval(pred)
    w = IV.interval_weights(asset)
    return float(np.sum(w * ((true >= lo) & (true <= hi))) / w.sum()), float(np.sum(w * (hi - lo)) / w.sum())


def spread(pred: np.ndarray, true: np.ndarray, asset: np.ndarray, sizes: list[int], splits: int, draws: int,
           seed: int) -> dict[int, dict[str, np.ndarray]]:
    """Per size n: coverage and width (splits, draws) of calibrations on n assets drawn from one half,
    scored on the other half."""
    uniq, inverse = np.unique(asset, return_inverse=True)
    rows_of = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    rng = np.random.default_rng(seed)
    out = {n: {"coverage": np.empty((splits, draws)), "width": np.empty((splits, draws))} for n in sizes}
    for s in range(splits):
        order = rng.permutation(len(uniq))
        pool, scored = order[: len(uniq) // 2], order[len(uniq) // 2:]
        test = np.concatenate([rows_of[a] for a in scored])
        for n in sizes:
            for d in range(draws):
                picked = rng.choice(pool, n, replace=True)
                rows = np.concatenate([rows_of[a] for a in picked])
                label = np.repeat(np.arange(n), [len(rows_of[a]) for a in picked])  # a draw is an asset
                doc = IV.fit(pred[rows], true[rows], label, seed=seed)
                out[n]["coverage"][s, d], out[n]["width"][s, d] = score(pred[test], true[test], asset[test], doc)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subsets", default="FD001,FD002")
    ap.add_argument("--sizes", default="50,100,200,400,800,1600")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="keep the preprocessed channels and predictions here "
                                                 "(default: a temporary folder)")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in a.sizes.split(",")})
    except ValueError:
        ap.error(f"--sizes must be comma-separated integers, got {a.sizes!r}")
    if min(sizes) < 2 or a.splits < 1 or a.draws < 2:
        ap.error("--sizes must be >= 2, --splits >= 1 and --draws >= 2")
    started = time.time()
    level = IV.DEFAULT_LEVEL
    print(f"# calibration size · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()} · {load()} · seed {a.seed} · "
          f"{a.splits} splits x {a.draws} draws per size · refit hyperparameters of bench/intervals.py\n")
    print(f"| fleet | caller sends | assets calibrating | coverage of the {level:.0%} interval, mean | s.d. within "
          f"a split (points) | 90 % of draws within (points) | draws within ±{TOLERANCE * 100:.1f} points | "
          f"mean width |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work) if a.work else Path(tmp)
        for subset in a.subsets.split(","):
            h = held_out(subset, Path(a.data_dir), work, a.seed)
            callers = [("last 30", "pred")] + ([("last 30 + summary", "pred_life")] if "pred_life" in h else [])
            for sends, key in callers:
                full = IV.fit(h[key], h["true"], h["asset"], seed=a.seed)["check"]
                total = len(np.unique(h["asset"]))
                print(f"| {subset} | {sends} | all {total}, {full['folds']}-fold check | {full['coverage']:.1%} | "
                      f"| | | {full['mean_width']:.1f} |", flush=True)
                for n, r in spread(h[key], h["true"], h["asset"], sizes, a.splits, a.draws, a.seed).items():
                    cov = r["coverage"]
                    dev = cov - cov.mean(axis=1, keepdims=True)
                    sd = float(np.sqrt(np.mean(np.var(cov, axis=1, ddof=1))))
                    within = float(np.mean(np.abs(dev) <= TOLERANCE))
                    print(f"| {subset} | {sends} | {n} (of {total // 2} in the pool) | {cov.mean():.1%} | "
                          f"{sd * 100:.2f} | ±{1.645 * sd * 100:.1f} | {within:.0%} | {r['width'].mean():.1f} |",
                          flush=True)
    print(f"\n{time.time() - started:.0f} s wall, {time.process_time():.0f} s CPU · {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
