"""SageMaker Processing entry point: evaluate a model on the held-out test set, honestly.

Reads (overridable paths; SageMaker defaults under ``/opt/ml/processing``)::

    input/model/model.tar.gz (or an unpacked model dir)
    input/test/test.parquet                  features of the test protocol rows + true labels
    input/baseline/{train,test}.parquet      raw current readings, uncapped labels (or the
                                             train-*/test-* parts of a sharded preprocessing)
    input/train, input/validation            (optional) features, for the ablation rows
    input/tuning/tuning.json                 (optional) best hyperparameters per algorithm

Writes ``output/evaluation/evaluation.json`` (SageMaker model-quality form plus ``nasa_score``,
baseline, improvement %, ablation, fingerprints) and PNG plots beside it.

C-MAPSS protocol: the last reading of each test asset against the RUL file (true, uncapped RUL).
Baseline: the raw readings of the current cycle, default XGBoost (XGBRegressor defaults), uncapped
RUL, scored the same way. Ablation: baseline -> + feature engineering (default XGBoost on our
features and capped labels) -> + hyperparameter tuning (best XGBoost found) -> + algorithm
selection (the model under evaluation). The ablation's feature-engineering and tuned steps are fitted
on the rows the final model was fitted on: train + validation, every ``train.final_fit_stride``-th
reading of each asset above ``train.FINAL_FIT_ROWS`` readings (every reading below). Classification:
PR-AUC, ROC-AUC and precision/recall/F1 at the model's threshold, which train.py chose on validation
data, never on test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training_src import features as F
from training_src import inference as I
from training_src import train as T
from training_src.preprocess import test_fingerprint

DEFAULT_XGB_ROUNDS = 100  # XGBRegressor / XGBClassifier default n_estimators
#: the evaluation's allocations from this size up get mappings of their own (``train.keep_less_freed_memory``):
#: its XGBoost fits' buffers of a few hundred KB, which the heap kept once freed (0.6 system CPU s more at x4)
MMAP_THRESHOLD = 256 << 10


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² and the NASA asymmetric score of predictions ``p`` for truth ``y``."""
    err = p - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "r2": float(1 - np.sum(err ** 2) / ss_tot) if ss_tot > 0 else float("nan"),
            "nasa_score": F.nasa_score(p, y)}


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """PR-AUC (average precision), ROC-AUC, and precision/recall/F1/accuracy at ``threshold``."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )
    yhat = (p >= threshold).astype(int)
    return {"pr_auc": float(average_precision_score(y, p)), "roc_auc": float(roc_auc_score(y, p)),
            "precision": float(precision_score(y, yhat, zero_division=0)),
            "recall": float(recall_score(y, yhat, zero_division=0)),
            "f1": float(f1_score(y, yhat, zero_division=0)), "accuracy": float(accuracy_score(y, yhat)),
            "threshold": float(threshold)}


def _part_files(directory: Path, name: str) -> list[Path]:
    """``<name>.parquet``, or the parts a sharded preprocessing wrote (``<name>-*.parquet``), in name order."""
    files = sorted(directory.glob(f"{name}.parquet")) + sorted(directory.glob(f"{name}-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{directory}: no {name}.parquet or {name}-*.parquet")
    return files


def ablation_rows(files: list[Path], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ablation's training rows from the train then validation channel ``files``: float32 features in
    ``names`` order and float64 labels, the rows the final model was fitted on: above
    ``train.FINAL_FIT_ROWS`` readings every ``train.final_fit_stride``-th reading of each asset
    (``train.stride_mask``), as the refit reads them; otherwise all."""
    assets = T.read_column(files, "_asset")
    every = 1 if assets is None else T.final_fit_stride(len(assets))
    return T.read_rows(files, names, T.stride_mask(assets, every) if every > 1 else None)


def _fit_predict(task: str, X: np.ndarray, y: np.ndarray, Xt: np.ndarray, hp: dict[str, Any],
                 names: list[str] | None, cap: float | None, spec: F.FeatureSpec | None, nthread: int,
                 life_columns: Callable[[], np.ndarray | None] | None = None) -> np.ndarray:
    """Fit XGBoost with ``hp`` on X, y and predict Xt: the model(s) train.py fits for ``spec``
    (``T.fit_models``; X, y each row once, blanked in place for a pair and given back as
    ``life_columns`` says), or one model on rows of another layout (``spec`` None: the raw-readings
    baseline)."""
    hps = {k: str(v) for k, v in hp.items()}
    if spec is None:
        model, _ = T.fit_model("xgboost", X, y, task, hps, nthread, 0, names=names)
    else:
        model, _ = T.fit_models("xgboost", X, y, task, hps, nthread, 0, names=names, spec=spec,
                                life_columns=life_columns)
    p = T.predict("xgboost", model, Xt)
    return F.clip_rul(p, cap) if task == "rul_regression" else p


def load_model_dir(path: Path, scratch: Path) -> Path:
    """An unpacked model directory for ``path`` (a dir, a model.tar.gz, or a dir holding one)."""
    if path.is_dir() and (path / "model.tar.gz").exists():
        path = path / "model.tar.gz"
    if path.is_dir():
        return path
    with tarfile.open(path) as tar:
        tar.extractall(scratch, filter="data")
    return scratch


def _plots(out: Path, task: str, y: np.ndarray, p: np.ndarray, importance: list[tuple[str, float]],
           threshold: float | None, cap: float | None = None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        names.append(name)

    if task == "rul_regression":
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.scatter(y, p, s=18, alpha=0.75, edgecolor="none")
        hi = max(float(y.max()), float(p.max())) * 1.05
        ax.plot([0, hi], [0, hi], "k--", lw=1, label="perfect")
        if cap:
            ax.axhline(cap, color="tab:orange", ls=":", lw=1.2, label=f"RUL cap ({cap:g}): healthy plateau")
        ax.set(xlabel="true RUL (cycles)", ylabel="predicted RUL (cycles)", xlim=(0, hi), ylim=(0, hi),
               title="Predicted vs true RUL (test, last cycle per asset)")
        ax.legend(loc="upper left")
        save(fig, "pred_vs_true.png")
        fig, ax = plt.subplots(figsize=(6.5, 4))
        d = p - y
        ax.scatter(y, d, s=18, alpha=0.75, c=np.where(d > 0, "tab:red", "tab:blue"), edgecolor="none")
        ax.axhline(0, color="k", lw=1)
        ax.set(xlabel="true RUL (cycles)", ylabel="predicted − true (cycles)",
               title="Residuals by true RUL (red: late, penalised more)")
        save(fig, "residuals.png")
    else:
        from sklearn.metrics import confusion_matrix, precision_recall_curve
        prec, rec, _ = precision_recall_curve(y, p)
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot(rec, prec, lw=2)
        ax.axhline(y.mean(), color="grey", ls="--", lw=1, label=f"chance ({y.mean():.3f})")
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve (test)", xlim=(0, 1),
               ylim=(0, 1.02))
        ax.legend()
        save(fig, "pr_curve.png")
        cm = confusion_matrix(y, (p >= (threshold or 0.5)).astype(int), labels=[0, 1])
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["ok", "failure"], yticklabels=["ok", "failure"],
               xlabel="predicted", ylabel="true", title=f"Confusion matrix (threshold {threshold or 0.5:.3f})")
        save(fig, "confusion_matrix.png")
    if importance:
        top = importance[:20][::-1]
        fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(top) + 1.2))
        ax.barh([n for n, _ in top], [v for _, v in top], color="tab:green")
        ax.set(xlabel="importance (total gain, normalised)" if task else "", title="Top features")
        save(fig, "feature_importance.png")
    return names


def feature_importance(model: Any) -> list[tuple[str, float]]:
    """(feature, normalised importance) sorted descending: the candidate's ``importance()`` (total gain
    for trees, |coef| for linear)."""
    names = model.spec.feature_names
    vals = np.asarray(model.predictor.importance(), dtype=float)
    total = vals.sum() or 1.0
    order = np.argsort(-vals)
    return [(names[i], float(vals[i] / total)) for i in order if vals[i] > 0]


def candidate_comparison(tuning: dict[str, Any]) -> dict[str, Any] | None:
    """Which candidate algorithm won the tuning and by how much, on the objective tuning chose by
    (validation or out-of-fold, never the test set): ``tuning.json``'s best trial per algorithm, best
    first, and the winner's margin over the runner-up. None with fewer than two candidates tried."""
    best = tuning.get("best_by_algorithm") or {}
    if len(best) < 2:
        return None
    minimize = tuning.get("direction", "minimize") == "minimize"
    completed: dict[str, int] = {}
    for t in tuning.get("trials") or []:
        if t.get("state") == "COMPLETE":
            completed[t.get("algorithm")] = completed.get(t.get("algorithm"), 0) + 1
    rows = sorted(({"algorithm": a, "objective": b["value"], "trial": b["trial"], "completed": completed.get(a, 0)}
                   for a, b in best.items()), key=lambda r: r["objective"], reverse=not minimize)
    win, second = rows[0], rows[1]
    margin = abs(second["objective"] - win["objective"])
    return {"objective": tuning.get("objective"), "winner": win["algorithm"], "runner_up": second["algorithm"],
            "margin": margin, "margin_pct": 100.0 * margin / abs(second["objective"]) if second["objective"] else None,
            "by_algorithm": rows}


def evaluate(model_path: Path, test_dir: Path, baseline_dir: Path | None, train_dir: Path | None,
             validation_dir: Path | None, tuning_path: Path | None, out_dir: Path,
             nthread: int = 2) -> dict[str, Any]:
    """Compute the report and plots; returns the report (also written to out_dir/evaluation.json)."""
    with tempfile.TemporaryDirectory() as scratch:
        model = I.model_fn(str(load_model_dir(model_path, Path(scratch))))
    test = T.read_channel(test_dir)
    task, spec = model.spec.task, model.spec
    Xt, yt = T.split_xy(test, spec.feature_names)
    p = np.asarray(model.predictor.predict(Xt), dtype=float)
    cap = spec.label_cap
    reg = task == "rul_regression"
    if reg:
        p = F.clip_rul(p, cap)
        m = regression_metrics(yt, p)
    else:
        m = classification_metrics(yt, p, model.threshold)

    def row(step: str, pred: np.ndarray, thr: float = 0.5) -> dict[str, Any]:
        mm = regression_metrics(yt, pred) if reg else classification_metrics(yt, pred, thr)
        keys = ("rmse", "mae", "nasa_score") if reg else ("pr_auc", "f1", "precision", "recall")
        return {"step": step, **{k: mm[k] for k in keys}}

    # The ablation's fits (each step's model trained again) run one after the other, each with every
    # thread (xgboost's hist result does not depend on the thread count), and the plots are drawn after
    # them: matplotlib, once it has drawn, holds about 30 MB that sat beside the fits' peak when the plots
    # were drawn beside them. The fits still run in a thread of their own, as they did then: run in this
    # (main) thread instead, FD001's evaluation took 57-66 s of user CPU instead of 9 at load 20 (8.7 s with
    # OMP_WAIT_POLICY=PASSIVE: OpenMP threads spinning for descheduled partners; libgomp spins less when
    # more threads than cores have used it, as the main thread's predictions and the fits' thread do).
    # The feature rows are read once (``ablation_rows``) and every fit reads that one matrix: a pair's fit
    # blanks its life columns in place (and the next fit finds them read again), so two fits on it must
    # not overlap; each step's rows are read only when its turn comes and freed after.
    steps: list[tuple[str, float]] = []  # (ablation step, threshold), in the order of the fits
    raw_rows = None  # the raw-reading baseline's train and test files
    if baseline_dir is not None and sorted(baseline_dir.glob("train*.parquet")):
        raw_rows = _part_files(baseline_dir, "train"), _part_files(baseline_dir, "test")
        for files in raw_rows:
            T.check_rows(files)  # a bad file stops the evaluation here, before anything is written
        steps.append(("baseline: raw current readings, default XGBoost" + (", uncapped RUL" if reg else ""), 0.5))
    feature_hps: list[dict[str, Any]] = []
    reused = None
    if train_dir is not None and validation_dir is not None and train_dir.exists() and validation_dir.exists():
        row_files = T.channel_files(train_dir) + T.channel_files(validation_dir)
        T.check_rows(row_files, spec.feature_names)
        steps.append(("+ feature engineering (default XGBoost)", 0.5))
        feature_hps.append({"num_round": DEFAULT_XGB_ROUNDS})
        if tuning_path is not None and tuning_path.exists():
            tuning = json.loads(tuning_path.read_text())
            best_xgb = (tuning.get("best_by_algorithm") or {}).get("xgboost")
            if best_xgb:
                step = "+ hyperparameter tuning (best XGBoost)"
                thr = model.threshold if model.meta.get("algorithm") == "xgboost" else 0.5
                mine = model.meta.get("hyperparameters") or {}
                if model.meta.get("algorithm") == "xgboost" and all(
                        str(mine.get(k)) == str(v) for k, v in best_xgb["params"].items()):
                    reused = (step, p, thr)  # the final model IS the tuned XGBoost refit on the same data
                else:
                    steps.append((step, thr))
                    feature_hps.append(best_xgb["params"])

    def ablation_fits() -> list[np.ndarray]:
        preds = []
        if raw_rows:  # float32 rows of every non-meta column, read column by column
            Xb, yb = T.read_rows(raw_rows[0])
            Xbt, _ = T.read_rows(raw_rows[1])
            preds.append(_fit_predict(task, Xb, yb, Xbt, {"num_round": DEFAULT_XGB_ROUNDS}, None, None, None,
                                      nthread))
            del Xb, yb, Xbt
        if feature_hps:
            X, y = ablation_rows(row_files, spec.feature_names)
            # a pair's window fit blanks X's life columns in place; rather than hold a copy of them through
            # it, they are read again from the channel files for the next fit, or left blank after the
            # last one (nothing reads X after it)
            life = F.life_names(spec)
            for i, hp in enumerate(feature_hps):
                last = i == len(feature_hps) - 1
                preds.append(_fit_predict(task, X, y, Xt, hp, spec.feature_names, cap, spec, nthread,
                                          (lambda: None) if last else (lambda: ablation_rows(row_files, life)[0])))
            del X, y
        return preds

    out_dir.mkdir(parents=True, exist_ok=True)
    importance = feature_importance(model)
    with ThreadPoolExecutor(1) as pool:
        preds = pool.submit(ablation_fits).result()
    plots = _plots(out_dir, task, yt, p, importance, model.threshold if not reg else None, cap)
    ablation: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None
    for (step, thr), pred in zip(steps, preds, strict=True):
        if step.startswith("baseline"):
            ablation.append(row(step, np.clip(pred, 0.0, None) if reg else pred))
            baseline = {k: v for k, v in ablation[-1].items() if k != "step"}
        else:
            ablation.append(row(step, pred, thr))
    if reused is not None:
        ablation.append(row(*reused))
    ablation.append(row(f"+ algorithm selection ({model.meta.get('algorithm', '?')}): final model", p,
                        model.threshold))
    report: dict[str, Any] = {"task": task, "profile": spec.profile.get("name"),
                              "subset": spec.profile.get("subset")}
    if reg:
        report["regression_metrics"] = {k: {"value": m[k], "standard_deviation": None}
                                        for k in ("rmse", "mae", "r2")}
        report["nasa_score"] = m["nasa_score"]
        report["protocol"] = "last reading of each test asset vs true (uncapped) RUL"
    else:
        report["binary_classification_metrics"] = {k: {"value": v, "standard_deviation": None}
                                                   for k, v in m.items()}
        report["protocol"] = "stratified held-out test rows; threshold chosen on validation data"
    if baseline:
        report["baseline"] = baseline
        if reg:
            imp = {k: 100.0 * (baseline[k] - m[k]) / baseline[k] for k in ("rmse", "mae", "nasa_score")
                   if baseline[k] > 0}
            report["improvement_pct"] = imp["rmse"]
        else:
            imp = {k: 100.0 * (m[k] - baseline[k]) / baseline[k] for k in ("pr_auc", "f1") if baseline[k] > 0}
            report["improvement_pct"] = imp.get("pr_auc", 0.0)
        report["improvement_pct_by_metric"] = imp
    report["ablation"] = ablation
    if tuning_path is not None and tuning_path.exists():
        comparison = candidate_comparison(json.loads(tuning_path.read_text()))
        if comparison:
            report["candidates"] = comparison
    report["feature_importance"] = [{"feature": n, "importance": v} for n, v in importance[:20]]
    report.update({
        "test_fingerprint": test_fingerprint(test), "n_test": len(yt), "model_version": model.version,
        "algorithm": model.meta.get("algorithm"), "hyperparameters": model.meta.get("hyperparameters"),
        "label_cap": cap, "plots": plots,
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=1))
    (out_dir / "test_predictions.csv").write_text(
        pd.DataFrame({"asset": test["_asset"], "true": yt, "predicted": p}).to_csv(index=False))
    return report


def main(argv: list[str] | None = None) -> int:
    base = "/opt/ml/processing"
    ap = argparse.ArgumentParser(description="Evaluate a model on the test protocol.")
    ap.add_argument("--model", default=f"{base}/input/model")
    ap.add_argument("--test", default=f"{base}/input/test")
    ap.add_argument("--baseline", default=f"{base}/input/baseline")
    ap.add_argument("--train", default=f"{base}/input/train")
    ap.add_argument("--validation", default=f"{base}/input/validation")
    ap.add_argument("--tuning", default=f"{base}/input/tuning/tuning.json")
    ap.add_argument("--output-dir", default=f"{base}/output/evaluation")
    ap.add_argument("--nthread", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    # the ablation reads its rows from parquet: through allocators that give freed memory back, as train.py
    # does (FD002 x4, evaluate alone: 705 -> 680 MB peak, one pair of runs at load 5), with XGBoost's
    # allocations from MMAP_THRESHOLD up in mappings of their own: the heap kept 100-130 MB its fits had
    # freed (FD002 x4, evaluate alone in a fresh interpreter: 734,724 KB with 4 MB, 672,188 KB with 256 KB)
    T.keep_less_freed_memory(MMAP_THRESHOLD)
    try:
        report = evaluate(Path(a.model), Path(a.test), Path(a.baseline), Path(a.train), Path(a.validation),
                          Path(a.tuning), Path(a.output_dir), a.nthread)
    except (T.TrainError, ValueError, FileNotFoundError, tarfile.TarError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if report["task"] == "rul_regression":
        print(f"evaluate: rmse={report['regression_metrics']['rmse']['value']:.3f} "
              f"nasa={report['nasa_score']:.1f} improvement={report.get('improvement_pct', 0):.1f}%")
    else:
        b = report["binary_classification_metrics"]
        print(f"evaluate: pr_auc={b['pr_auc']['value']:.3f} f1={b['f1']['value']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
