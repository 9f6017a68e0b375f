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
selection (the model under evaluation). Classification: PR-AUC, ROC-AUC and precision/recall/F1
at the model's threshold, which train.py chose on validation data, never on test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
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


def _read_parts(directory: Path, name: str) -> pd.DataFrame:
    """``<name>.parquet``, or the parts a sharded preprocessing wrote (``<name>-*.parquet``), in name order."""
    files = sorted(directory.glob(f"{name}.parquet")) + sorted(directory.glob(f"{name}-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{directory}: no {name}.parquet or {name}-*.parquet")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if len(files) > 1 \
        else pd.read_parquet(files[0])


def _xy(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    cols = [c for c in df.columns if not c.startswith("_")]
    return df[cols].to_numpy(dtype=np.float32), df["_label"].to_numpy(dtype=float)


def _fit_predict(task: str, X: np.ndarray, y: np.ndarray, Xt: np.ndarray, hp: dict[str, Any],
                 names: list[str] | None, cap: float | None, spec: F.FeatureSpec | None, nthread: int) -> np.ndarray:
    """Fit XGBoost with ``hp`` on X, y and predict Xt: the model(s) train.py fits for ``spec``
    (``T.fit_models``; X, y each row once, blanked and restored in place for a pair), or one model on
    rows of another layout (``spec`` None: the raw-readings baseline)."""
    hps = {k: str(v) for k, v in hp.items()}
    if spec is None:
        model, _ = T.fit_model("xgboost", X, y, task, hps, nthread, 0, names=names)
    else:
        model, _ = T.fit_models("xgboost", X, y, task, hps, nthread, 0, names=names, spec=spec)
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

    # The ablation's fits are independent: they run at the same time, one xgboost thread each when
    # there are as many fits as cores (xgboost releases the GIL; its result does not depend on the
    # thread count), while this thread draws the plots. Rows keep their order.
    fits: list[tuple[str, tuple[Any, ...], float]] = []  # (ablation step, _fit_predict arguments, threshold)
    if baseline_dir is not None and sorted(baseline_dir.glob("train*.parquet")):
        Xb, yb = _xy(_read_parts(baseline_dir, "train"))  # float32 rows; the float64 frames are not kept
        Xbt, _ = _xy(_read_parts(baseline_dir, "test"))
        fits.append(("baseline: raw current readings, default XGBoost" + (", uncapped RUL" if reg else ""),
                     (task, Xb, yb, Xbt, {"num_round": DEFAULT_XGB_ROUNDS}, None, None, None), 0.5))
    reused = None
    if train_dir is not None and validation_dir is not None and train_dir.exists() and validation_dir.exists():
        # train then validation rows, as train.py fits them; each channel's float64 frame is dropped
        # as soon as its float32 rows are out
        parts = [T.split_xy(T.read_channel(d), spec.feature_names) for d in (train_dir, validation_dir)]
        X, y = np.vstack([x for x, _ in parts]), np.concatenate([v for _, v in parts])
        del parts
        fits.append(("+ feature engineering (default XGBoost)",
                     (task, X, y, Xt, {"num_round": DEFAULT_XGB_ROUNDS}, spec.feature_names, cap, spec), 0.5))
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
                    # its own rows: a pair's fit blanks its rows' life columns in place while the other runs
                    Xs = X.copy() if F.two_models(spec) else X
                    fits.append((step, (task, Xs, y, Xt, best_xgb["params"], spec.feature_names, cap, spec), thr))

    out_dir.mkdir(parents=True, exist_ok=True)
    importance = feature_importance(model)
    workers = max(1, min(len(fits), nthread))
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_fit_predict, *args, max(1, nthread // workers)) for _, args, _ in fits]
        plots = _plots(out_dir, task, yt, p, importance, model.threshold if not reg else None, cap)
        preds = [f.result() for f in futures]
    ablation: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None
    for (step, _, thr), pred in zip(fits, preds, strict=True):
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
