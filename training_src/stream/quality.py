"""Live model quality: archived answers joined with recorded failures, per model version (docs/decisions.md).

Inputs are what the stream keeps: the archived answers (``archive.py`` ``answer`` items: asset, life,
time of the reading answered, the answer with its ``model_version``), the archived events
(``event`` items: asset, life, ``failure``/``maintenance``, time) and the risk events
(``decisions.py``). Only lives that ended in a **failure** have a realised RUL; everything else is
left out of the figures (and counted as ``pending``). Per model version (the version that gave the
answer, or raised the alert):

- ``rmse``: RUL answers against the realised RUL (failure time - reading time), uncapped;
  ``rmse_capped``: both capped at the profile's cap (the training protocol);
- ``coverage``: share of realised RULs inside the answer's interval [rul_lower, rul_upper];
- ``recall``: failures whose life raised an alert at least ``lead`` before the failure, out of all
  failures (a failure counts for the version of the life's last answer);
- ``precision``: alerts followed by a failure within the horizon H, out of the alerts whose outcome
  is known (the life ended in a failure, or it ran on past the alert + H without one; alerts in lives
  ended by maintenance, and fresh ones, are left out);
- ``median_lead``: median over failures of (failure time - start of the life's last alert episode);
- ``early_alerts``: share of the alerts of failed lives raised more than 2H before the failure.

Pure Python, so local mode (``predmaint quality``) and a processing job can run it alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import median
from typing import Any

from .decisions import AT_RISK


def _rmse(errors: list[float]) -> float | None:
    # fsum: exactly rounded, so the figure does not depend on the order the items were read in (the job
    # reads archive files in listing order, a caller in its own)
    return math.sqrt(math.fsum(e * e for e in errors) / len(errors)) if errors else None


def failures(events: Iterable[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """(asset, life) -> failure time, from archived ``event`` items (a life ends once: the first counts)."""
    out: dict[tuple[str, int], float] = {}
    for e in events:
        if e.get("type") == "event" and e.get("event") == "failure":
            out.setdefault((str(e["asset_id"]), int(e["life"])), float(e["time"]))
    return out


def ended(events: Iterable[dict[str, Any]]) -> set[tuple[str, int]]:
    """The (asset, life) pairs ended by any event."""
    return {(str(e["asset_id"]), int(e["life"])) for e in events if e.get("type") == "event"}


def quality(answers: Iterable[dict[str, Any]], outcomes: Iterable[dict[str, Any]],
            risk_events: Iterable[dict[str, Any]], *, horizon: float | None, lead: float = 0.0,
            cap: float | None = None, last_seen: dict[tuple[str, int], float] | None = None
            ) -> dict[str, dict[str, Any]]:
    """Model version -> its figures (see the module doc; a figure without data is None).

    ``answers``: archived answer items; ``outcomes``: archived event items; ``risk_events``: the
    decision rule's events; ``horizon``: H (None: precision is not computed); ``lead``: L for recall;
    ``cap``: the profile's RUL cap (None: ``rmse_capped`` is None); ``last_seen``: (asset, life) ->
    time of its last reading (lets alerts in lives still running count once H has passed)."""
    outcomes = list(outcomes)
    fail = failures(outcomes)
    done = ended(outcomes)
    last_seen = last_seen or {}
    per: dict[str, dict[str, Any]] = {}

    def bucket(version: str) -> dict[str, Any]:
        return per.setdefault(version, {"err": [], "err_capped": [], "inside": 0, "intervals": 0, "answers": 0,
                                        "pending": 0, "failures": 0, "caught": 0, "leads": [], "alerts": 0,
                                        "true_alerts": 0, "early": 0, "alerts_known": 0,
                                        "alerts_failed": 0})

    last_answer: dict[tuple[str, int], tuple[float, str]] = {}
    seen: set[tuple[str, int, float, str]] = set()
    for a in answers:
        ident = (str(a["asset_id"]), int(a["life"]), float(a["time"]), str(a["answer"].get("model_version", "")))
        if ident in seen:
            continue  # archived twice (a retried batch)
        seen.add(ident)
        key = (str(a["asset_id"]), int(a["life"]))
        ans = a["answer"]
        version = str(ans.get("model_version", ""))
        b = bucket(version)
        t = float(a["time"])
        if key not in last_answer or t >= last_answer[key][0]:
            last_answer[key] = (t, version)
        if key not in fail or type(ans.get("rul")) not in (int, float):
            b["pending"] += 1
            continue
        true = fail[key] - t
        b["answers"] += 1
        b["err"].append(ans["rul"] - true)
        if cap is not None:
            b["err_capped"].append(min(ans["rul"], cap) - min(true, cap))
        lo, hi = ans.get("rul_lower"), ans.get("rul_upper")
        if type(lo) in (int, float) and type(hi) in (int, float):
            b["intervals"] += 1
            b["inside"] += lo <= true <= hi

    alerts: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for e in risk_events:
        if e.get("type") != AT_RISK:
            continue
        key = (str(e["asset_id"]), int(e["life"]))
        alerts.setdefault(key, []).append(e)
        b = bucket(str(e.get("model_version", "")))
        b["alerts"] += 1
        t = float(e["time"])
        if key in fail:
            b["alerts_known"] += 1
            b["alerts_failed"] += 1
            b["true_alerts"] += horizon is not None and fail[key] - t <= horizon
            b["early"] += horizon is not None and fail[key] - t > 2 * horizon
        elif key not in done and horizon is not None and last_seen.get(key, -math.inf) >= t + horizon:
            b["alerts_known"] += 1  # ran on past H without failing: a false alarm

    for key, t_fail in fail.items():
        version = last_answer[key][1] if key in last_answer else ""
        b = bucket(version)
        b["failures"] += 1
        raised = sorted(float(e["time"]) for e in alerts.get(key, []) if float(e["time"]) <= t_fail)
        if raised:
            lead_time = t_fail - raised[-1]
            b["leads"].append(lead_time)
            b["caught"] += lead_time >= lead

    out = {}
    for version, b in sorted(per.items()):
        out[version] = {
            "answers": b["answers"], "pending_answers": b["pending"], "failures": b["failures"],
            "alerts": b["alerts"],
            "rmse": _rmse(b["err"]), "rmse_capped": _rmse(b["err_capped"]),
            "coverage": b["inside"] / b["intervals"] if b["intervals"] else None,
            "recall": b["caught"] / b["failures"] if b["failures"] else None,
            "precision": (b["true_alerts"] / b["alerts_known"]) if horizon is not None and b["alerts_known"] else None,
            "early_alerts": (b["early"] / b["alerts_failed"]) if horizon is not None and b["alerts_failed"] else None,
            "median_lead": median(b["leads"]) if b["leads"] else None,
        }
    return out
