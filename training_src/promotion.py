"""The champion/challenger promotion rule, shared by the promote Lambda and local mode.

A challenger is approved only if (1) its metrics are present, finite and non-negative, (2) it
meets the absolute thresholds, and (3) it strictly beats the current champion on the primary
metric measured on the same test set (same dataset fingerprint). Ties keep the champion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: primary metric and whether lower is better, by task
PRIMARY = {"rul_regression": ("rmse", True), "failure_classification": ("pr_auc", False)}


@dataclass(frozen=True)
class Thresholds:
    """Absolute quality gates; ``None`` disables a gate."""

    max_rmse: float | None = None
    max_nasa_score: float | None = None
    min_pr_auc: float | None = None
    min_f1: float | None = None
    min_improvement_over_baseline_pct: float | None = None


@dataclass(frozen=True)
class Decision:
    approved: bool
    reason: str
    primary_metric: str
    challenger_value: float | None
    champion_value: float | None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """Model package approval status in SageMaker Model Registry terms."""
        return "Approved" if self.approved else "Rejected"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


class MetricsError(ValueError):
    """Metrics are missing, not numbers, NaN/inf or negative: the rule refuses to decide."""


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Flatten an evaluation report (SageMaker model-quality form) to ``{"rmse": 12.3, ...}``."""
    out: dict[str, Any] = {}
    for section in ("regression_metrics", "binary_classification_metrics"):
        for name, value in (report.get(section) or {}).items():
            out[name] = value.get("value") if isinstance(value, dict) else value
    for name in ("nasa_score", "improvement_pct"):
        if name in report:
            out[name] = report[name]
    return out


def _checked(metrics: dict[str, Any], name: str, who: str) -> float:
    if name not in metrics or metrics[name] is None:
        raise MetricsError(f"{who} metrics lack {name!r}")
    value = metrics[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MetricsError(f"{who} metric {name!r} is not a number: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise MetricsError(f"{who} metric {name!r} is not finite: {value!r}")
    if value < 0 and name != "improvement_pct":
        raise MetricsError(f"{who} metric {name!r} is negative: {value!r}")
    return value


def decide(
    task: str,
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    thresholds: Thresholds | None = None,
) -> Decision:
    """Decide whether ``challenger`` replaces ``champion``.

    Both are evaluation reports (see evaluate.py) or already-flat metric dicts, each with a
    ``test_fingerprint``. Raises ``MetricsError`` when the challenger's metrics cannot be trusted.
    """
    if task not in PRIMARY:
        raise ValueError(f"unknown task {task!r}")
    thresholds = thresholds or Thresholds()
    metric, lower_is_better = PRIMARY[task]
    ch = flat_metrics(challenger) if "regression_metrics" in challenger or \
        "binary_classification_metrics" in challenger else dict(challenger)
    value = _checked(ch, metric, "challenger")
    checks: dict[str, bool] = {}

    def gate(name: str, limit: float | None, upper: bool) -> None:
        if limit is None:
            return
        v = _checked(ch, name, "challenger")
        checks[f"{name} {'<=' if upper else '>='} {limit}"] = v <= limit if upper else v >= limit

    gate("rmse", thresholds.max_rmse, True)
    gate("nasa_score", thresholds.max_nasa_score, True)
    gate("pr_auc", thresholds.min_pr_auc, False)
    gate("f1", thresholds.min_f1, False)
    gate("improvement_pct", thresholds.min_improvement_over_baseline_pct, False)
    failed = [k for k, ok in checks.items() if not ok]
    if failed:
        return Decision(False, f"fails absolute threshold(s): {', '.join(failed)}", metric, value, None, checks)

    if champion is None:
        return Decision(True, "no champion yet; challenger meets the thresholds", metric, value, None, checks)

    cm = flat_metrics(champion) if "regression_metrics" in champion or \
        "binary_classification_metrics" in champion else dict(champion)
    fp_ch = challenger.get("test_fingerprint") or ch.get("test_fingerprint")
    fp_cm = champion.get("test_fingerprint") or cm.get("test_fingerprint")
    if not fp_ch or fp_ch != fp_cm:
        return Decision(False, "champion was evaluated on a different test set; metrics are not comparable",
                        metric, value, None, checks)
    champ_value = _checked(cm, metric, "champion")
    better = value < champ_value if lower_is_better else value > champ_value
    checks[f"{metric} beats champion"] = better
    if not better:
        return Decision(False, f"{metric} {value:.4g} does not beat champion's {champ_value:.4g}",
                        metric, value, champ_value, checks)
    return Decision(True, f"{metric} {value:.4g} beats champion's {champ_value:.4g}",
                    metric, value, champ_value, checks)
