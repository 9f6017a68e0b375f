"""Accuracy benchmark: the full local pipeline on C-MAPSS FD001, FD002 and AI4I 2020, ablation tables.

Usage: ``python bench/accuracy.py [--trials 30] [--seed 0] [--profiles cmapss:FD001,cmapss:FD002,ai4i2020]
[--last all,100,50,30]`` (``make bench``). Each profile goes through ``predmaint.runner.run_pipeline``
(prepare, preprocess, Optuna tuning of train.py, refit, evaluate) in a throwaway home, so the figures
are exactly what ``predmaint run`` produces. Prints Markdown tables docs/results.md quotes, plus the machine
and date.

For run-to-failure fleets, ``--last`` then serves the trained model in-process (the serving package's
own loader and feature path) on each test asset as a caller would send it: its whole history
(``all``) or only its last N readings, and reports RMSE and NASA score under both protocols: against
the true RUL (NASA's) and against the RUL capped at ``--eval-cap`` (125, most published results), and
for a model with an interval calibration the RMSE and NASA score against the true RUL of its expected
RUL (``intervals.Calibration.expected_rul``: the capped answer plus its bin's mean calibration residual).
For a model that reads life summaries (``windows.life_stats``) each N also gets a row where the caller
sends its summary with the window (the summary made by an earlier request of the readings before the
window, as a streaming client keeps it), and the whole history a row that starts a summary (``{}``).
The measured figures, with their date and machine, are in docs/results.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from predmaint.runner import run_pipeline  # noqa: E402


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(report: dict) -> str:
    """Markdown ablation table of one evaluation report."""
    reg = report["task"] == "rul_regression"
    keys = ("rmse", "mae", "nasa_score") if reg else ("pr_auc", "f1", "precision", "recall")
    lines = ["| step | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for row in report["ablation"]:
        cells = [f"{row[k]:,.0f}" if k == "nasa_score" and row[k] > 1000 else f"{row[k]:.3f}" if not reg
                 else f"{row[k]:.2f}" for k in keys]
        lines.append(f"| {row['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_last(text: str) -> list[int | None]:
    """``all,100,50,30`` -> [None, 100, 50, 30] (None: the whole history)."""
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            out.append(None)
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise SystemExit(f"--last: {part!r} is neither 'all' nor a positive whole number")
    return out


def window_table(model_dir: Path, profile_name: str, subset: str | None, data_dir: Path,
                 lasts: list[int | None], eval_cap: float) -> str:
    """Markdown table: RMSE and NASA score of the served model on every test asset, both protocols,
    when the caller sends each asset's whole history or only its last N readings."""
    import numpy as np

    from training_src import features as F
    from training_src.dataio import read_rul_file, read_table, resolve_file
    from training_src.predmaint_serving import model as model_mod
    from training_src.predmaint_serving import predictors
    from training_src.profiles import load_profile

    profile = load_profile(profile_name, subset)
    model = model_mod.load(model_dir)
    raw = F.validate_readings(read_table(resolve_file(data_dir, profile.file("test")), profile), profile)
    true = read_rul_file(resolve_file(data_dir, profile.file("test_rul")))
    ids = raw[profile.id_column].to_numpy()
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    minimum = model.spec.min_readings
    lines = [f"window: the model reads the last {minimum or 'all'} readings "
             f"({'W chosen by CV' if model.spec.selection.get('window') else 'fixed by the profile'}); "
             f"label cap {model.spec.label_cap}", "",
             "| caller sends | RMSE vs true RUL | NASA vs true RUL | RMSE vs RUL capped at "
             f"{eval_cap:g} | NASA vs capped | expected RUL (calibration mean) vs true RUL: RMSE / NASA |",
             "|---|---:|---:|---:|---:|---:|"]
    def served(spans: list[tuple[int, int]], life: list | None) -> tuple[np.ndarray, list | None]:
        """The served features of each asset's readings ``[lo, hi)``, with or without life summaries."""
        rows = np.concatenate([np.arange(lo, hi) for lo, hi in spans])
        cols = {c: raw[c].to_numpy()[rows] for c in raw.columns}
        offsets = np.r_[0, np.cumsum([hi - lo for lo, hi in spans])]
        X, updated = F.transform_last_life(cols, offsets, model.spec, life)
        return X.astype(np.float32), updated

    def row(label: str, X: np.ndarray, with_life: bool = False) -> str:
        p = predictors.predict_matrix(model, X)
        capped = np.minimum(true, eval_cap)
        rmse_t = float(np.sqrt(np.mean((p - true) ** 2)))
        rmse_c = float(np.sqrt(np.mean((p - capped) ** 2)))
        expected = "–"
        if model.intervals is not None:  # the true-RUL protocol's transform of the capped answer
            e = model.intervals.of(with_life).expected_rul(p)
            expected = f"{float(np.sqrt(np.mean((e - true) ** 2))):.2f} / {F.nasa_score(e, true):,.0f}"
        return (f"| {label} | {rmse_t:.2f} | {F.nasa_score(p, true):,.0f} | {rmse_c:.2f} | "
                f"{F.nasa_score(p, capped):,.0f} | {expected} |")

    assets = list(itertools.pairwise(bounds))
    for n in lasts:
        spans = [(a if n is None else max(a, b - n), b) for a, b in assets]
        label = "whole history" if n is None else f"last {n} readings"
        lines.append(row(label, served(spans, None)[0]))
        if not model.spec.life_stats:
            continue
        if n is None:  # the whole history sent once, starting a summary ({})
            lines.append(row("whole history, starting a life summary", served(spans, [F.NEW_LIFE] * len(spans))[0],
                             True))
            continue
        # a streaming caller: its summary holds every reading before this window (kept from earlier
        # answers; here one earlier request of those readings), and it sends the window with it
        earlier = [(a, lo) if lo > a else (a, b) for (a, b), (lo, _) in zip(assets, spans, strict=True)]
        _, states = served(earlier, [F.NEW_LIFE] * len(assets))
        life = [st if lo > a else F.NEW_LIFE for st, (a, _), (lo, _) in zip(states, assets, spans, strict=True)]
        lines.append(row(f"last {n} readings + life summary", served(spans, life)[0], True))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profiles", default="cmapss:FD001,cmapss:FD002,ai4i2020")
    ap.add_argument("--last", default="all,100,50,30",
                    help="what callers send per test asset: 'all' and/or last-N counts (default all,100,50,30)")
    ap.add_argument("--eval-cap", type=float, default=125.0, help="cap of the capped protocol (default 125)")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
    lasts = parse_last(a.last)
    print(f"# accuracy benchmark · {time.strftime('%Y-%m-%d')} · {_machine()} · {a.trials} trials · seed {a.seed}\n")
    with tempfile.TemporaryDirectory(prefix="predmaint-bench-") as home:
        for item in a.profiles.split(","):
            name, _, subset = item.partition(":")
            t = time.time()
            res = run_pipeline(name, subset or None, Path(a.data_dir), Path(home), trials=a.trials, seed=a.seed,
                               progress=False)
            report = json.loads(res.evaluation_path.read_text())
            tuning = json.loads((res.run_dir / "tuning.json").read_text())
            print(f"## {name} {subset}: {time.time() - t:.0f}s, best {tuning['best']['algorithm']} "
                  f"({tuning['objective']} {tuning['best']['value']:.4f} on validation)\n")
            print("best trial per candidate (the algorithm selection's ablation): " + ", ".join(
                f"{algo} {b['value']:.4f} (trial {b['trial']}; {counts[algo]} of its trials completed, the rest pruned)"
                for algo, b in tuning["best_by_algorithm"].items()
                for counts in [Counter(r["algorithm"] for r in tuning["trials"] if r["state"] == "COMPLETE")])
                  + "\n")
            print(table(report))
            if report["task"] == "rul_regression":
                print(f"\nimprovement over baseline: RMSE {report['improvement_pct']:.1f} % · "
                      f"NASA {report['improvement_pct_by_metric']['nasa_score']:.1f} %\n")
                sel = json.loads((res.run_dir / "model" / "feature_spec.json").read_text()).get("selection") or {}
                for what in ("window", "cap"):
                    if what in sel:
                        cands = ", ".join(f"{k}: {v['rmse_capped']:.2f}/{v['rmse_uncapped']:.2f}"
                                          for k, v in sel[what]["candidates"].items())
                        print(f"{what} chosen by CV: {sel[what]['chosen']} (capped/uncapped CV RMSE {cands})\n")
                print(window_table(res.run_dir / "model", name, subset or None, Path(a.data_dir), lasts,
                                   a.eval_cap) + "\n")
            else:
                b = report["binary_classification_metrics"]
                print(f"\nthreshold {b['threshold']['value']:.3f} (chosen on validation) · "
                      f"ROC-AUC {b['roc_auc']['value']:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
