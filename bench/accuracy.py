"""Accuracy benchmark: the full local pipeline on C-MAPSS FD001 and AI4I 2020, ablation tables.

Usage: ``python bench/accuracy.py [--trials 30] [--seed 0] [--profiles cmapss:FD001,ai4i2020]``
(``make bench``). Each profile goes through ``predmaint.runner.run_pipeline`` (prepare,
preprocess, Optuna tuning of train.py, refit, evaluate) in a throwaway home, so the figures are
exactly what ``predmaint run`` produces. Prints Markdown tables the README quotes, plus the machine
and date. Targets (issue 2): FD001 RMSE <= 12.5 and NASA <= 250 (stretch 11.5 / 200), >= 50 %
better than the baseline; AI4I F1 >= 0.88 and PR-AUC >= 0.90.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profiles", default="cmapss:FD001,ai4i2020")
    ap.add_argument("--data-dir", default=os.environ.get("PREDMAINT_DATA_DIR", str(REPO / "data")))
    a = ap.parse_args(argv)
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
            print(table(report))
            if report["task"] == "rul_regression":
                print(f"\nimprovement over baseline: RMSE {report['improvement_pct']:.1f} % · "
                      f"NASA {report['improvement_pct_by_metric']['nasa_score']:.1f} %\n")
            else:
                b = report["binary_classification_metrics"]
                print(f"\nthreshold {b['threshold']['value']:.3f} (chosen on validation) · "
                      f"ROC-AUC {b['roc_auc']['value']:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
