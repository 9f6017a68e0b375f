"""How many held-out assets the RUL interval calibration needs: coverage of calibrations on n assets.

Usage: ``python bench/calibration_size.py [--subsets FD001,FD002] [--sizes 25,50,100,150,200]
[--repeats 200] [--seed 0] [--work DIR]``.

For each subset: ``preprocess.py`` (the run's split and features; kept in ``--work`` when given), then
the held-out predictions the refit's calibration makes (``train.held_out_predictions`` with every fold
fitted: each training asset predicted by the model fitted with the same hyperparameters on the other
folds' assets; the fixed hyperparameters ``bench/intervals.py`` uses, ``FIXED``). Then, ``--repeats``
times per size n: n assets drawn at random, a calibration fitted on their eligible readings alone
(``intervals.fit``, as the refit fits it) and scored on every other asset's eligible readings (each
asset once, the test protocol's expectation over its cuts, as ``intervals`` weighs them). Both callers:
the window alone and with a life summary (their own calibrations).

Prints Markdown: per subset, caller and n, the mean coverage of the 80 % interval on the other assets,
its standard deviation over the draws, its 5th-95th percentiles, the share of draws within
+-1.5 points of 80 %, and the mean width. Training data only (the test engines are not read).
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

TOLERANCE = 0.015  # +-1.5 points of the target level


def held_out(subset: str, data_dir: Path, work: Path, seed: int) -> T.HeldOut:
    """The refit calibration's held-out predictions (every fold fitted) for ``subset``."""
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
    return h


def score(pred: np.ndarray, true: np.ndarray, asset: np.ndarray, doc: dict) -> tuple[float, float]:
    """Coverage and mean width of a calibration document on rows (each asset once)."""
    lo, hi = IV.Calibration.from_doc(doc).interval(pred)
    w = IV.interval_weights(asset)
    return float(np.sum(w * ((true >= lo) & (true <= hi))) / w.sum()), float(np.sum(w * (hi - lo)) / w.sum())


def subsample(pred: np.ndarray, true: np.ndarray, asset: np.ndarray, n: int, repeats: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Coverage and width on the other assets of ``repeats`` calibrations, each on n random assets."""
    uniq = np.unique(asset)
    rng = np.random.default_rng(seed)
    cov, wid = np.empty(repeats), np.empty(repeats)
    for r in range(repeats):
        cal = np.isin(asset, rng.choice(uniq, n, replace=False))
        doc = IV.fit(pred[cal], true[cal], asset[cal], seed=seed)
        cov[r], wid[r] = score(pred[~cal], true[~cal], asset[~cal], doc)
    return cov, wid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subsets", default="FD001,FD002")
    ap.add_argument("--sizes", default="25,50,100,150,200")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="keep the preprocessed channels here (default: a temporary folder)")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in a.sizes.split(",")})
    except ValueError:
        ap.error(f"--sizes must be comma-separated integers, got {a.sizes!r}")
    if min(sizes) < 2 or a.repeats < 2:
        ap.error("--sizes must be >= 2 and --repeats >= 2")
    started = time.time()
    level = IV.DEFAULT_LEVEL
    print(f"# calibration size · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()} · {load()} · seed {a.seed} · "
          f"{a.repeats} draws per size · refit hyperparameters of bench/intervals.py\n")
    print(f"| fleet | caller sends | assets calibrating (of all) | coverage of the {level:.0%} interval on the "
          f"others, mean | s.d. | 5th-95th percentile | draws within ±{TOLERANCE * 100:.1f} points | mean width |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work) if a.work else Path(tmp)
        for subset in a.subsets.split(","):
            h = held_out(subset, Path(a.data_dir), work, a.seed)
            asset, true = h.asset[h.eligible], h.true[h.eligible]
            total = len(np.unique(asset))
            callers = [("last 30", h.pred)] + ([("last 30 + summary", h.pred_life)] if h.pred_life is not None else [])
            for sends, pred in callers:
                p = pred[h.eligible]
                full = IV.fit(p, true, asset, seed=a.seed)["check"]
                print(f"| {subset} | {sends} | all {total} ({full['folds']}-fold check) | {full['coverage']:.1%} | "
                      f"| | | {full['mean_width']:.1f} |", flush=True)
                for n in sizes:
                    if n > total - 10:
                        continue  # too few assets left to score on
                    cov, wid = subsample(p, true, asset, n, a.repeats, a.seed + n)
                    lo, hi = np.percentile(cov, [5, 95])
                    within = np.mean(np.abs(cov - level) <= TOLERANCE)
                    print(f"| {subset} | {sends} | {n} ({total}) | {cov.mean():.1%} | {cov.std(ddof=1) * 100:.1f} | "
                          f"{lo:.1%}-{hi:.1%} | {within:.0%} | {wid.mean():.1f} |", flush=True)
    print(f"\n{time.time() - started:.0f} s wall, {time.process_time():.0f} s CPU · {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
