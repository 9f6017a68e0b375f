"""Interval benchmark: coverage and width of the RUL intervals on the C-MAPSS test fleets.

Usage: ``python bench/intervals.py [--subsets FD001,FD002] [--seed 0] [--trials 0]``.

For each subset: ``preprocess.py`` (the run's split and features), then the refit exactly as the
pipeline runs it (``train.py --fit_on train+validation``, SageMaker script contract, which fits the
interval calibration on out-of-fold predictions of the training assets), then the served answer
(``predmaint_serving``: model load, predictions, ``codec.response_document`` with a horizon) for the
last reading of every test asset, scored against the true RUL file. With ``--trials 0`` (default,
minutes) the refit uses the fixed hyperparameters ``FIXED`` (mid-range values of the search space,
not chosen on any test data); ``--trials N`` runs the whole local pipeline (``run_pipeline``: N
Optuna trials, refit, evaluate) and measures its model instead.

Prints Markdown: coverage of the 80 % interval (the share of test assets inside it),
mean width, the training-only estimate stored with the model (``check``), coverage by predicted-RUL
bin, and for horizons of 15/30/60 cycles the mean failure probability against the observed share
failing within the horizon, with the Brier score. Self-contained: rerun it after feature changes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training_src import features as F  # noqa: E402
from training_src.predmaint_serving import codec, predictors  # noqa: E402
from training_src.predmaint_serving import intervals as IV  # noqa: E402
from training_src.predmaint_serving import model as M  # noqa: E402

#: refit hyperparameters for --trials 0 (mid-range values of search_space's xgboost ranges)
# row_stride as the pipeline's static hyperparameters set it (search_space): the calibration folds' fits read
# every 3rd reading of each asset
FIXED = {"algorithm": "xgboost", "row_stride": "3", "num_round": "400", "max_depth": "5", "eta": "0.05", "min_child_weight": "16",
         "subsample": "0.8", "colsample_bytree": "0.6"}
HORIZONS = (15, 30, 60)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def refit(subset: str, data_dir: Path, work: Path, seed: int, trials: int) -> Path:
    """A model directory for ``subset`` and the preprocessed data beside it (``work/data``)."""
    if trials > 0:
        from predmaint.runner import run_pipeline

        res = run_pipeline("cmapss", subset, data_dir, work / "home", trials=trials, seed=seed, progress=False)
        return res.run_dir / "model"
    py = sys.executable
    subprocess.run([py, str(REPO / "training_src" / "preprocess.py"), "--profile", "cmapss", "--subset", subset,
                    "--seed", str(seed), "--data-dir", str(data_dir), "--output-dir", str(work / "data")],
                   check=True, capture_output=True)
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(work / "data" / "train"),
           "SM_CHANNEL_VALIDATION": str(work / "data" / "validation"), "SM_MODEL_DIR": str(work / "model"),
           "SM_OUTPUT_DATA_DIR": str(work / "train-out")}
    args = [a for k, v in FIXED.items() for a in (f"--{k}", v)]
    proc = subprocess.run([py, str(REPO / "training_src" / "train.py"), *args, "--fit_on", "train+validation",
                           "--seed", str(seed)], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"train.py failed: {proc.stderr.strip().splitlines()[-1]}")
    return work / "model"


def test_frame(model_dir: Path, work: Path) -> pd.DataFrame:
    """The test rows (last reading of each test asset, true RUL) the refit's run produced."""
    for candidate in (work / "data" / "test" / "test.parquet", model_dir.parent / "processed" / "test" / "test.parquet"):
        if candidate.exists():
            return pd.read_parquet(candidate)
    raise SystemExit(f"no test/test.parquet for {model_dir}")


def measure(model_dir: Path, test: pd.DataFrame, with_life: bool = False) -> dict:
    """Coverage, width, per-bin coverage and horizon probabilities of the served answers: callers that
    send a life summary (``with_life``: the test rows' features, from whole histories) or the window
    alone (the life features missing, as the endpoint computes them without a summary)."""
    model = M.load(model_dir)
    if model.intervals is None:
        raise SystemExit(f"{model_dir}: the model has no interval calibration")
    X = test[model.spec.feature_names].to_numpy(dtype=np.float32)
    k = len(F.life_names(model.spec))
    if k and not with_life:
        X[:, -k:] = np.nan
    y = test["_label"].to_numpy(dtype=float)
    p = predictors.predict_matrix(model, X)
    cal = model.intervals.of(with_life)
    doc = model.meta["intervals"]
    doc = doc["life"] if with_life and doc.get("life") else doc  # the calibration's own stored document
    out: dict = {"assets": len(y), "rmse": float(np.sqrt(np.mean((p - y) ** 2))), "level": cal.level,
                 "check": doc.get("check"), "horizons": {}, "life": with_life}
    ids = test["_asset"].tolist()
    life = [{}] * len(ids) if with_life else None  # any non-None entry: answered with a summary

    def response(h: int) -> dict:
        return codec.response_document(model, ids, p, None, [h] * len(ids), life)

    doc = response(HORIZONS[0])
    lo = np.array([d["rul_lower"] for d in doc["predictions"]])
    hi = np.array([d["rul_upper"] for d in doc["predictions"]])
    covered = (y >= lo) & (y <= hi)
    out.update(coverage=float(covered.mean()), mean_width=float(np.mean(hi - lo)),
               median_width=float(np.median(hi - lo)))
    b = IV.bin_of(cal.edges, p)
    edges = [0.0, *cal.edges.tolist(), float("inf")]
    out["bins"] = [{"pred": f"{edges[k]:.0f}-{edges[k + 1]:.0f}", "assets": int((b == k).sum()),
                    "coverage": float(covered[b == k].mean()) if (b == k).any() else None,
                    "width": float((hi - lo)[b == k].mean()) if (b == k).any() else None}
                   for k in range(len(edges) - 1)]
    for h in HORIZONS:
        d = response(h)
        prob = np.array([x["failure_probability"] for x in d["predictions"]])
        seen = (y <= h).astype(float)
        out["horizons"][h] = {"mean_probability": float(prob.mean()), "observed": float(seen.mean()),
                              "brier": float(np.mean((prob - seen) ** 2)),
                              "brier_base_rate": float(np.mean((seen.mean() - seen) ** 2))}
    return out


def report(subset: str, r: dict, seconds: float) -> str:
    how = "with a life summary (whole histories)" if r["life"] else "the window alone (no life summary)"
    lines = [f"## {subset}, {how}: {r['assets']} test engines, RMSE {r['rmse']:.2f} ({seconds:.0f}s)", "",
             f"{r['level']:.0%} interval: coverage **{r['coverage']:.1%}**, mean width {r['mean_width']:.1f} cycles "
             f"(median {r['median_width']:.1f})"]
    if r["check"]:
        lines.append(f"training-only estimate stored with the model ({r['check']['folds']} folds of training "
                     f"engines): coverage {r['check']['coverage']:.1%}, mean width {r['check']['mean_width']:.1f}")
    lines += ["", "| predicted RUL | engines | coverage | mean width |", "|---|---:|---:|---:|"]
    for b in r["bins"]:
        if b["assets"]:
            lines.append(f"| {b['pred']} | {b['assets']} | {b['coverage']:.0%} | {b['width']:.1f} |")
    lines += ["", "| horizon h | mean P(RUL <= h) | observed share | Brier | Brier of the base rate |",
              "|---:|---:|---:|---:|---:|"]
    for h, v in r["horizons"].items():
        lines.append(f"| {h} | {v['mean_probability']:.3f} | {v['observed']:.3f} | {v['brier']:.4f} | "
                     f"{v['brier_base_rate']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subsets", default="FD001,FD002")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=0, help="0: fixed hyperparameters; N: the whole pipeline, N trials")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of Markdown")
    ap.add_argument("--row-stride", default=None,
                    help="row_stride of the calibration folds' fits (default FIXED's 3, as the pipeline's static "
                         "hyperparameters; 1: every reading)")
    a = ap.parse_args(argv)
    if a.row_stride is not None:
        FIXED["row_stride"] = str(int(a.row_stride))
    hp = "fixed hyperparameters " + " ".join(f"{k}={v}" for k, v in FIXED.items() if k != "algorithm") \
        if a.trials == 0 else f"{a.trials} tuning trials"
    if not a.json:
        print(f"# interval benchmark · {time.strftime('%Y-%m-%d')} · {_machine()} · seed {a.seed} · {hp}\n")
    results = {}
    for subset in a.subsets.split(","):
        t = time.time()
        with tempfile.TemporaryDirectory(prefix=f"predmaint-intervals-{subset}-") as tmp:
            work = Path(tmp)
            model_dir = refit(subset, Path(a.data_dir), work, a.seed, a.trials)
            test = test_frame(model_dir, work)
            kinds = [False, True] if M.load(model_dir).spec.life_stats else [False]
            rs = {("life" if kind else "window"): measure(model_dir, test, kind) for kind in kinds}
        results[subset] = rs
        if not a.json:
            for r in rs.values():
                print(report(subset, r, time.time() - t), flush=True)
    if a.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
