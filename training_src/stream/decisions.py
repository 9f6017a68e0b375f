"""The maintenance decision rule and the risk episodes it opens and closes (docs/decisions.md).

One rule for the fleet, configured once (``cdk.json`` ``predmaint.decisions``, read by
``stacks.config.DecisionsConfig``): an asset is **at risk** when its latest answer's
``failure_probability`` (the probability of failure within the horizon H, or a classifier's own
probability) is at least the threshold, or, when a minimum lead time is set, when its ``rul_lower``
is at most that lead time. The threshold is given, or follows from two costs:
alert when P(failure within H) >= cost of a planned maintenance / cost of an unplanned failure.

``step`` is evaluated on every state update (the stream core calls it with each new answer);
entering risk opens an episode and emits ``AssetAtRisk``, leaving it (a calm answer, or an event
that ends the life) emits ``AssetRiskCleared``. The episode (``at_risk``, ``risk_since``) lives in
the asset's state, so a replayed or duplicated record, which changes no state, emits nothing.
Pure Python: local mode, the scoring Lambda and the quality job use this same module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AT_RISK = "AssetAtRisk"
CLEARED = "AssetRiskCleared"

#: defaults by task when ``predmaint.decisions`` leaves a value unset: a run-to-failure fleet looks
#: 30 time units ahead with costs 10:1 (threshold 0.1); a classifier uses its own probability at 0.5
TASK_DEFAULTS: dict[str, dict[str, float | None]] = {
    "rul_regression": {"horizon": 30.0, "cost_failure": 10.0, "cost_maintenance": 1.0},
    "failure_classification": {"horizon": None, "threshold": 0.5},
}


class DecisionError(ValueError):
    """A decision rule that cannot be built; ``str()`` names the setting."""


@dataclass(frozen=True)
class Rule:
    """``horizon``: H in the profile's time unit (None for a classifier); ``threshold`` on the failure
    probability; ``min_lead``: at risk also when ``rul_lower`` <= it (None: off)."""

    horizon: float | None
    threshold: float
    min_lead: float | None = None

    def at_risk(self, answer: dict[str, Any]) -> bool:
        """Whether ``answer`` (an endpoint answer) puts its asset at risk."""
        p = answer.get("failure_probability")
        if type(p) in (int, float) and p >= self.threshold:
            return True
        low = answer.get("rul_lower")
        return self.min_lead is not None and type(low) in (int, float) and low <= self.min_lead


def make_rule(task: str, *, horizon: float | None = None, threshold: float | None = None,
              cost_failure: float | None = None, cost_maintenance: float | None = None,
              min_lead: float | None = None, where: str = "predmaint.decisions") -> Rule:
    """The rule of a profile's ``task`` from the configured values (None: the task's default).

    Either ``threshold`` or both costs; DecisionError naming ``where.<key>`` otherwise."""
    if task not in TASK_DEFAULTS:
        raise DecisionError(f"{where}: no decision rule for task {task!r}")
    defaults = TASK_DEFAULTS[task]
    if threshold is not None and (cost_failure is not None or cost_maintenance is not None):
        raise DecisionError(f"{where}: give either threshold or cost_failure and cost_maintenance, not both")
    if (cost_failure is None) != (cost_maintenance is None):
        raise DecisionError(f"{where}: cost_failure and cost_maintenance go together")
    if threshold is None and cost_failure is None:
        threshold = defaults.get("threshold")
        cost_failure, cost_maintenance = defaults.get("cost_failure"), defaults.get("cost_maintenance")
    if threshold is None:
        assert cost_failure is not None and cost_maintenance is not None
        if not cost_failure > 0 or not cost_maintenance > 0:
            raise DecisionError(f"{where}.cost_failure/cost_maintenance: must both be > 0")
        if cost_maintenance > cost_failure:
            raise DecisionError(f"{where}.cost_maintenance: {cost_maintenance} exceeds cost_failure "
                                f"{cost_failure}: maintenance would never pay")
        threshold = cost_maintenance / cost_failure
    if not 0 < threshold <= 1:
        raise DecisionError(f"{where}.threshold: must lie in (0, 1], got {threshold!r}")
    if task == "failure_classification":
        if horizon is not None:
            raise DecisionError(f"{where}.horizon: a classifier answers with its own probability; leave it null")
        if min_lead is not None:
            raise DecisionError(f"{where}.min_lead: a classifier gives no rul_lower; leave it null")
    else:
        horizon = defaults["horizon"] if horizon is None else horizon
        if horizon is None or not horizon > 0:
            raise DecisionError(f"{where}.horizon: must be > 0, got {horizon!r}")
    if min_lead is not None and not min_lead >= 0:
        raise DecisionError(f"{where}.min_lead: must be >= 0, got {min_lead!r}")
    return Rule(None if horizon is None else float(horizon), float(threshold),
                None if min_lead is None else float(min_lead))


def _risk_fields(answer: dict[str, Any]) -> dict[str, Any]:
    keys = ("rul", "rul_lower", "rul_upper", "interval_level", "failure_probability", "horizon", "model_version")
    return {k: answer[k] for k in keys if k in answer}


def step(asset_id: str, life: int, at_risk: bool, since: float | None, answer: dict[str, Any], time: float,
         rule: Rule) -> tuple[bool, float | None, dict[str, Any] | None]:
    """One state update: the episode (``at_risk``, ``since``) before it and the new ``answer`` given at
    the reading ``time`` -> the episode after it and the event it emits (None: no change)."""
    now = rule.at_risk(answer)
    if now == at_risk:
        return at_risk, since, None
    if now:
        event = {"type": AT_RISK, "asset_id": asset_id, "life": life, "time": time, **_risk_fields(answer),
                 "threshold": rule.threshold}
        if rule.horizon is not None:
            event["horizon"] = rule.horizon
        return True, time, event
    return False, None, {"type": CLEARED, "asset_id": asset_id, "life": life, "time": time, "since": since,
                         "reason": "answer", **_risk_fields(answer)}


def end_of_life(asset_id: str, life: int, at_risk: bool, since: float | None, event: str, time: float
                ) -> dict[str, Any] | None:
    """An event (``maintenance``/``failure``) ended the life at ``time``: an open episode closes."""
    if not at_risk:
        return None
    return {"type": CLEARED, "asset_id": asset_id, "life": life, "time": time, "since": since, "reason": event}
