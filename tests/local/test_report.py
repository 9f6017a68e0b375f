"""The per-run HTML report, on a synthetic run folder (no training needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from predmaint import report
from predmaint.cli import main
from predmaint.errors import UsageError


def _png(path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def make_run(run_dir: Path, *, tuning: bool = True, decision: bool = True, evaluation: bool = True) -> Path:
    run_dir.mkdir(parents=True)
    if evaluation:
        _png(run_dir / "plots" / "predicted_vs_true.png")
        (run_dir / "evaluation.json").write_text(json.dumps({
            "task": "rul_regression", "profile": "cmapss", "subset": "FD001", "run_id": run_dir.name,
            "regression_metrics": {"rmse": {"value": 13.2}, "mae": {"value": 9.8}, "r2": {"value": 0.89}},
            "nasa_score": 310.5,
            "baseline": {"rmse": 41.0, "mae": 33.0, "nasa_score": 9000.0},
            "improvement_pct": 67.8,
            "ablation": [{"step": "baseline: raw current readings", "rmse": 41.0, "mae": 33.0, "nasa_score": 9000.0},
                         {"step": "+ feature engineering", "rmse": 15.0, "mae": 11.0, "nasa_score": 420.0},
                         {"step": "+ tuning <final>", "rmse": 13.2, "mae": 9.8, "nasa_score": 310.5}],
            "plots": ["plots/predicted_vs_true.png", "plots/missing.png"],
            "test_fingerprint": "abcdef0123456789abcdef", "n_test": 100, "model_version": "xgboost-123",
        }))
    if tuning:
        trials = [{"number": i, "algorithm": "xgboost" if i % 3 else "linear",
                   "params": {"eta": 0.1 + i / 100}, "value": (20 - i * 0.5) if i % 3 else 45.0 + i,
                   "state": "PRUNED" if i == 4 else "COMPLETE", "duration_s": 1.5} for i in range(12)]
        trials.append({"number": 12, "algorithm": "xgboost", "params": {}, "value": None, "state": "FAIL",
                       "duration_s": 0.1})
        (run_dir / "tuning.json").write_text(json.dumps({
            "trials": trials, "objective": "validation-rmse", "direction": "minimize",
            "best": {"algorithm": "xgboost", "params": {"eta": 0.21, "max_depth": 5}, "value": 14.5, "trial": 11}}))
    if decision:
        (run_dir / "decision.json").write_text(json.dumps({
            "approved": False, "status": "Rejected", "reason": "rmse 13.2 does not beat champion's 12.9",
            "primary_metric": "rmse", "challenger_value": 13.2, "champion_value": 12.9, "model_version": "4",
            "champion_before": "3", "checks": {"rmse <= 40": True, "rmse beats champion": False}}))
    return run_dir


def test_render_full_run(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs" / "r1")
    out = report.render(run)
    assert out == run / "report.html"
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and "http" not in page.split("<body>")[1]
    # metrics table: baseline vs model with improvement, direction-aware
    assert "RMSE (cycles)" in page and "41" in page and "13.2" in page and "+67.8%" in page
    # ablation rows, escaped
    assert "+ feature engineering" in page and "&lt;final&gt;" in page
    # plots: the existing one embedded, the missing one reported, the tuning history generated
    assert "src='plots/predicted_vs_true.png'" in page and "missing.png" in page
    assert (run / "plots" / report.TUNING_PNG).stat().st_size > 10_000
    assert f"src='plots/{report.TUNING_PNG}'" in page
    for src in re.findall(r"src='([^']+)'", page):
        assert (run / src).is_file(), src
    # best parameters and the decision
    assert "max_depth" in page and "0.21" in page
    assert "Rejected" in page and "does not beat champion" in page and "check: rmse beats champion" in page


def test_render_with_missing_optional_files(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r2", tuning=False, decision=False)
    page = report.render(run).read_text()
    assert "No tuning.json" in page and "No promotion decision" in page and "RMSE" in page
    only_tuning = make_run(tmp_path / "r3", evaluation=False, decision=False)
    assert "No evaluation.json" in report.render(only_tuning).read_text()
    (tmp_path / "r4").mkdir()
    (tmp_path / "r4" / "evaluation.json").write_text("{broken")
    with pytest.raises(UsageError, match=r"evaluation\.json is not a readable JSON object"):
        report.render(tmp_path / "r4")


def test_tuning_plot_with_no_values_is_skipped(tmp_path: Path) -> None:
    assert report.tuning_plot({"trials": [{"number": 0, "value": None}]}, tmp_path / "t.png") is None
    assert report.tuning_plot({"trials": [{"number": 0, "value": 3.0, "algorithm": "x"}], "direction": "maximize"},
                              tmp_path / "t.png") == tmp_path / "t.png"


def test_improvement_direction() -> None:
    assert report.improvement("rmse", 40.0, 10.0) == pytest.approx(75.0)
    assert report.improvement("pr_auc", 0.5, 0.75) == pytest.approx(50.0)
    assert report.improvement("rmse", 0.0, 1.0) is None


def test_cli_report_renders_if_missing_and_prints_path_last(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "runs" / "r5")
    assert main(["report", "r5", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(run / "report.html") and (run / "report.html").exists()
    assert any("decision: Rejected as model v4" in ln for ln in out)
    assert any("rmse=13.2 (baseline 41)" in ln for ln in out)
