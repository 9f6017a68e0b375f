"""A run's HTML report: metrics vs baseline, ablation, evaluation plots, tuning history, promotion decision.

``render(run_dir)`` reads what the runner leaves in the run folder and writes ``run_dir/report.html``
(plus ``run_dir/plots/tuning_history.png``). The page is self-contained apart from the PNGs beside it
(inline CSS, no scripts, no network), so the folder can be zipped and mailed.

Inputs, all optional except that at least one must exist:
  evaluation.json  SageMaker model-quality metrics, baseline, improvement %, ablation rows, plot names
  tuning.json      {"trials": [{number, algorithm, params, value, state, duration_s}], "best": {...},
                    "objective": "validation-rmse", "direction": "minimize"}
  decision.json    {approved, status, reason, primary_metric, challenger_value, champion_value, model_version}
  fleet-data.json  {"files": [{path, key, sha256, units, rows}], units, rows}: the fleet's failure
                   histories a `run --fleet-data` trained on (a "Fleet data" section)
"""

from __future__ import annotations

import html
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

from .errors import UsageError

#: metrics where smaller is better (everything else: larger is better)
LOWER_IS_BETTER = {"rmse", "mae", "nasa_score", "mse", "mape", "log_loss", "brier"}
METRIC_LABELS = {"rmse": "RMSE (cycles)", "mae": "MAE (cycles)", "nasa_score": "NASA score", "r2": "R²",
                 "pr_auc": "PR-AUC", "roc_auc": "ROC-AUC", "f1": "F1", "precision": "Precision",
                 "recall": "Recall", "accuracy": "Accuracy"}
ALGO_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
TUNING_PNG = "tuning_history.png"

CSS = """
body{font:15px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
     color:#1d2330;max-width:1100px;margin:2rem auto;padding:0 1.2rem;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #e3e6ec;
   padding-bottom:.3rem} .sub{color:#5b6474;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-variant-numeric:tabular-nums}
th,td{padding:.35rem .8rem;border-bottom:1px solid #eceef2;text-align:right} th{background:#f6f7f9}
td:first-child,th:first-child{text-align:left}
.good{color:#137333;font-weight:600} .bad{color:#b3261e;font-weight:600}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600;color:#fff}
.approved{background:#137333} .rejected{background:#b3261e} .unknown{background:#6b7280}
.cards{display:flex;gap:1rem;flex-wrap:wrap} .card{border:1px solid #e3e6ec;border-radius:8px;padding:.7rem 1rem;
   min-width:150px} .card .v{font-size:1.5rem;font-weight:600} .card .k{color:#5b6474;font-size:.85rem}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:1rem}
figure{margin:0;border:1px solid #e3e6ec;border-radius:8px;padding:.5rem;background:#fff}
figure img{width:100%;height:auto} figcaption{color:#5b6474;font-size:.85rem;text-align:center}
code{background:#f3f4f6;padding:.05rem .3rem;border-radius:4px} .note{color:#5b6474;font-style:italic}
"""


def _load(path: Path) -> dict[str, Any] | None:
    """A JSON file's object, or None if absent or unreadable (the report must still render)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _num(v: Any) -> float | None:
    if isinstance(v, dict):
        v = v.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
        return None
    return float(v)


def _fmt(v: Any, digits: int = 4) -> str:
    x = _num(v)
    if x is None:
        return "–" if v is None else html.escape(str(v))
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _e(v: Any) -> str:
    return html.escape(str(v))


def model_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """Flat metrics of the evaluated model (regression or classification section, plus nasa_score)."""
    out: dict[str, float] = {}
    for section in ("regression_metrics", "binary_classification_metrics"):
        for k, v in (evaluation.get(section) or {}).items():
            x = _num(v)
            if x is not None:
                out[k] = x
    x = _num(evaluation.get("nasa_score"))
    if x is not None:
        out["nasa_score"] = x
    return out


def improvement(metric: str, baseline: float, model: float) -> float | None:
    """Improvement of ``model`` over ``baseline`` in %, positive = better, whichever direction is better."""
    if baseline == 0:
        return None
    if metric in LOWER_IS_BETTER:
        return 100.0 * (baseline - model) / abs(baseline)
    return 100.0 * (model - baseline) / abs(baseline)


# ---------------------------------------------------------------------- tuning plot
def tuning_plot(tuning: dict[str, Any], out: Path) -> Path | None:
    """Objective by trial (colored by algorithm, pruned/failed hollow) with the best-so-far line.

    Returns the PNG path, or None when there is no trial with a value to plot.
    """
    trials = [t for t in tuning.get("trials") or [] if isinstance(t, dict)]
    points = [(t.get("number"), _num(t.get("value")), str(t.get("algorithm", "?")), str(t.get("state", "")))
              for t in trials]
    points = [(n, v, a, s) for n, v, a, s in points if isinstance(n, int) and v is not None]
    if not points:
        return None
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    minimize = str(tuning.get("direction", "minimize")).lower().startswith("min")
    objective = str(tuning.get("objective", "objective"))
    algos = sorted({a for _, _, a, _ in points})
    colors = {a: ALGO_COLORS[i % len(ALGO_COLORS)] for i, a in enumerate(algos)}
    fig = Figure(figsize=(10, 4.6), dpi=110)
    ax = fig.add_subplot()
    for a in algos:
        done = [(n, v) for n, v, aa, s in points if aa == a and s.upper() in ("COMPLETE", "")]
        other = [(n, v) for n, v, aa, s in points if aa == a and s.upper() not in ("COMPLETE", "")]
        if done:
            ax.scatter(*zip(*done, strict=True), s=42, color=colors[a], label=f"{a} ({len(done)})", zorder=3,
                       edgecolor="white", linewidth=0.6)
        if other:
            ax.scatter(*zip(*other, strict=True), s=42, facecolor="none", edgecolor=colors[a], zorder=3,
                       label=f"{a} pruned/failed ({len(other)})")
    complete = sorted((n, v) for n, v, _, s in points if s.upper() in ("COMPLETE", ""))
    if complete:
        xs, best, cur = [], [], None
        for n, v in complete:
            cur = v if cur is None or (v < cur if minimize else v > cur) else cur
            xs.append(n)
            best.append(cur)
        ax.step(xs, best, where="post", color="#111827", linewidth=2, label="best so far", zorder=4)
        ax.annotate(f"best {best[-1]:.4g}", xy=(xs[-1], best[-1]), xytext=(6, 8 if minimize else -14),
                    textcoords="offset points", fontsize=9, color="#111827")
    values = [v for _, v, _, _ in points]
    lo, hi = min(values), max(values)
    # A few terrible trials would flatten the interesting region: clip the view, say so in the title.
    if complete and len(values) >= 5:
        q = sorted(values)
        pivot = q[int(0.8 * (len(q) - 1))] if minimize else q[int(0.2 * (len(q) - 1))]
        if minimize and hi > pivot + 3 * (pivot - lo) and pivot > lo:
            ax.set_ylim(lo - 0.05 * (pivot - lo), pivot + 0.6 * (pivot - lo))
            ax.set_title(f"Tuning history ({len(points)} trials; axis clipped, worst trials above the view)",
                         fontsize=11)
        elif not minimize and lo < pivot - 3 * (hi - pivot) and hi > pivot:
            ax.set_ylim(pivot - 0.6 * (hi - pivot), hi + 0.05 * (hi - pivot))
            ax.set_title(f"Tuning history ({len(points)} trials; axis clipped, worst trials below the view)",
                         fontsize=11)
    if not ax.get_title():
        ax.set_title(f"Tuning history ({len(points)} trials)", fontsize=11)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{objective} ({'lower' if minimize else 'higher'} is better)")
    ax.grid(True, alpha=0.3)
    # outside the axes: a legend inside would hide trials
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.png")
    fig.savefig(tmp)
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------- HTML sections
def _metrics_section(ev: dict[str, Any]) -> str:
    m = model_metrics(ev)
    base = {k: x for k, v in (ev.get("baseline") or {}).items() if (x := _num(v)) is not None}
    if not m:
        return "<p class='note'>No metrics in evaluation.json.</p>"
    rows = []
    for k in m:
        b = base.get(k)
        imp = improvement(k, b, m[k]) if b is not None else None
        cls = "" if imp is None else (" class='good'" if imp > 0 else " class='bad'" if imp < 0 else "")
        rows.append(f"<tr><td>{_e(METRIC_LABELS.get(k, k))} <small>{'↓' if k in LOWER_IS_BETTER else '↑'}</small></td>"
                    f"<td>{_fmt(b)}</td><td><b>{_fmt(m[k])}</b></td>"
                    f"<td{cls}>{'–' if imp is None else f'{imp:+.1f}%'}</td></tr>")
    extra = []
    for key, label in (("n_test", "test assets"), ("protocol", "protocol"), ("test_fingerprint", "test set"),
                       ("model_version", "model"), ("algorithm", "algorithm"), ("evaluated_at", "evaluated")):
        if ev.get(key) is not None:
            v = str(ev[key])
            extra.append(f"{label}: <code>{_e(v[:16] + '…' if key == 'test_fingerprint' and len(v) > 16 else v)}</code>")
    return ("<table><tr><th>Metric</th><th>Baseline</th><th>Model</th><th>Improvement</th></tr>"
            + "".join(rows) + "</table>"
            + (f"<p class='sub'>{' · '.join(extra)}</p>" if extra else "")
            + "<p class='sub'>Improvement is relative to the baseline, positive = better "
              "(↓ lower is better, ↑ higher is better).</p>")


def _ablation_section(ev: dict[str, Any]) -> str:
    rows = [r for r in ev.get("ablation") or [] if isinstance(r, dict)]
    if not rows:
        return "<p class='note'>No ablation in evaluation.json.</p>"
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k != "step" and k not in keys]
    head = "".join(f"<th>{_e(METRIC_LABELS.get(k, k))}</th>" for k in keys)
    body = "".join("<tr><td>" + _e(r.get("step", "")) + "</td>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys)
                   + "</tr>" for r in rows)
    table = f"<table><tr><th>Step</th>{head}</tr>{body}</table>"
    return table + _candidates_table(ev.get("candidates"))


def _candidates_table(comparison: Any) -> str:
    """The candidates' best tuning objective (the value the choice was made on), winner first."""
    if not isinstance(comparison, dict) or not comparison.get("by_algorithm"):
        return ""
    body = "".join(f"<tr><td>{_e(r.get('algorithm', '?'))}</td><td>{_fmt(r.get('objective'))}</td>"
                   f"<td>{_e(r.get('trial', ''))}</td><td>{_e(r.get('completed', ''))}</td></tr>"
                   for r in comparison["by_algorithm"] if isinstance(r, dict))
    note = (f"<p>Algorithm selection: <b>{_e(comparison.get('winner', '?'))}</b> won on "
            f"{_e(comparison.get('objective', 'the objective'))} by {_fmt(comparison.get('margin'))} "
            f"({_fmt(comparison.get('margin_pct'))} %) over {_e(comparison.get('runner_up', '?'))}.</p>")
    return (note + "<table><tr><th>Candidate</th><th>best tuning objective</th><th>trial</th>"
            f"<th>completed trials</th></tr>{body}</table>")


def _plots_section(run_dir: Path, ev: dict[str, Any]) -> str:
    figs, missing = [], []
    for name in ev.get("plots") or []:
        rel = Path(str(name))
        if not (run_dir / rel).is_file() and (run_dir / "plots" / rel.name).is_file():
            rel = Path("plots") / rel.name
        if rel.is_absolute() or ".." in rel.parts or not (run_dir / rel).is_file():
            missing.append(str(name))
            continue
        caption = rel.stem.replace("_", " ")
        figs.append(f"<figure><img src='{_e(rel.as_posix())}' alt='{_e(caption)}'>"
                    f"<figcaption>{_e(caption)}</figcaption></figure>")
    out = f"<div class='plots'>{''.join(figs)}</div>" if figs else "<p class='note'>No evaluation plots.</p>"
    if missing:
        out += f"<p class='note'>Missing plot file(s): {_e(', '.join(missing))}</p>"
    return out


def _tuning_section(run_dir: Path, tuning: dict[str, Any] | None) -> str:
    if not tuning:
        return "<p class='note'>No tuning.json in this run.</p>"
    png = tuning_plot(tuning, run_dir / "plots" / TUNING_PNG)
    trials = [t for t in tuning.get("trials") or [] if isinstance(t, dict)]
    states: dict[str, int] = {}
    for t in trials:
        states[str(t.get("state", "?"))] = states.get(str(t.get("state", "?")), 0) + 1
    dur = sum(_num(t.get("duration_s")) or 0.0 for t in trials)
    best = tuning.get("best") or {}
    parts = [f"<p>{len(trials)} trials ({', '.join(f'{v} {k.lower()}' for k, v in sorted(states.items()))}), "
             f"objective <code>{_e(tuning.get('objective', '?'))}</code> ({_e(tuning.get('direction', '?'))}), "
             f"{dur:.0f} s of trial time.</p>"]
    if png:
        parts.append(f"<figure><img src='plots/{TUNING_PNG}' alt='tuning history'>"
                     "<figcaption>objective by trial; line = best so far</figcaption></figure>")
    if best:
        params = best.get("params") or {}
        rows = "".join(f"<tr><td>{_e(k)}</td><td>{_fmt(v, 6) if _num(v) is not None else _e(v)}</td></tr>"
                       for k, v in params.items())
        parts.append(f"<h3>Best trial</h3><p>algorithm <b>{_e(best.get('algorithm', '?'))}</b>, "
                     f"{_e(tuning.get('objective', 'objective'))} = <b>{_fmt(best.get('value'))}</b>"
                     + (f" (trial {_e(best['trial'])})" if best.get("trial") is not None else "") + "</p>"
                     + (f"<table><tr><th>Hyperparameter</th><th>Value</th></tr>{rows}</table>" if rows else ""))
    return "".join(parts)


def _decision_section(dec: dict[str, Any] | None) -> str:
    if not dec:
        return "<p class='note'>No promotion decision recorded (decision.json missing).</p>"
    status = str(dec.get("status") or ("Approved" if dec.get("approved") else "Rejected"))
    cls = {"approved": "approved", "rejected": "rejected"}.get(status.lower(), "unknown")
    metric = dec.get("primary_metric", "metric")
    rows = [("primary metric", _e(metric)), ("challenger (this run)", _fmt(dec.get("challenger_value"))),
            ("champion before", _fmt(dec.get("champion_value")) +
             (f" (v{_e(dec['champion_before'])})" if dec.get("champion_before") else "")),
            ("registered as model version", _e(dec.get("model_version", "–")))]
    checks = dec.get("checks") or {}
    table = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    table += "".join(f"<tr><td>check: {_e(k)}</td><td class='{'good' if ok else 'bad'}'>{'pass' if ok else 'fail'}</td></tr>"
                     for k, ok in checks.items())
    return (f"<p><span class='badge {cls}'>{_e(status)}</span> {_e(dec.get('reason', ''))}</p>"
            f"<table>{table}</table>")


def _fleet_data_section(fleet: dict[str, Any]) -> str:
    """The fleet's failure histories the run trained on (``fleet-data.json``: path, sha256, units, rows)."""
    rows = "".join(f"<tr><td>{_e(f.get('key'))}</td><td>{_e(f.get('units'))}</td><td>{_e(f.get('rows'))}</td>"
                   f"<td><code>{_e(f.get('sha256'))}</code></td></tr>" for f in fleet.get("files", []))
    return (f"<p>{_e(fleet.get('units'))} unit(s), {_e(fleet.get('rows'))} row(s) added to the training data from "
            "the fleet's recorded failures.</p><table><tr><th>file</th><th>units</th><th>rows</th><th>sha256</th></tr>"
            f"{rows}</table>")


def _cards(ev: dict[str, Any] | None, dec: dict[str, Any] | None, summary: dict[str, Any] | None) -> str:
    cards = []
    if ev:
        m = model_metrics(ev)
        for k in ("rmse", "nasa_score", "pr_auc", "f1"):
            if k in m:
                cards.append((METRIC_LABELS[k], _fmt(m[k])))
        if _num(ev.get("improvement_pct")) is not None:
            cards.append(("vs baseline", f"{ev['improvement_pct']:+.1f}%"))
    if dec:
        cards.append(("decision", _e(dec.get("status") or ("Approved" if dec.get("approved") else "Rejected"))))
    if summary and _num(summary.get("seconds")) is not None:
        cards.append(("run time", f"{summary['seconds']:.0f} s"))
    return "<div class='cards'>" + "".join(f"<div class='card'><div class='v'>{v}</div><div class='k'>{_e(k)}</div></div>"
                                           for k, v in cards) + "</div>"


def render(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` (and ``plots/tuning_history.png``) and return the HTML path.

    Raises ``UsageError`` if ``run_dir`` holds none of evaluation.json, tuning.json, decision.json.
    """
    run_dir = Path(run_dir)
    for name in ("evaluation.json", "tuning.json", "decision.json"):  # present but corrupt: say so
        if (run_dir / name).exists() and _load(run_dir / name) is None:
            raise UsageError(f"{run_dir / name} is not a readable JSON object; the report is not rendered")
    ev = _load(run_dir / "evaluation.json")
    tuning = _load(run_dir / "tuning.json")
    dec = _load(run_dir / "decision.json")
    summary = _load(run_dir / "summary.json")
    if ev is None and tuning is None and dec is None:
        raise UsageError(f"{run_dir} holds no evaluation.json, tuning.json or decision.json; nothing to report")
    run_id = (ev or {}).get("run_id") or (summary or {}).get("run_id") or run_dir.name
    what = " ".join(str(x) for x in ((ev or {}).get("profile"), (ev or {}).get("subset")) if x)
    sections = [
        f"<h1>Run {_e(run_id)}</h1><p class='sub'>{_e(what)} · report generated "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>",
        _cards(ev, dec, summary),
        "<h2>Promotion decision</h2>" + _decision_section(dec),
        "<h2>Test metrics: baseline vs model</h2>" + (_metrics_section(ev) if ev else
                                                      "<p class='note'>No evaluation.json in this run.</p>"),
        "<h2>Ablation</h2>" + (_ablation_section(ev) if ev else "<p class='note'>–</p>"),
        "<h2>Evaluation plots</h2>" + (_plots_section(run_dir, ev) if ev else "<p class='note'>–</p>"),
        "<h2>Hyperparameter tuning</h2>" + _tuning_section(run_dir, tuning),
    ]
    fleet = _load(run_dir / "fleet-data.json")
    if fleet:
        sections.insert(3, "<h2>Fleet data</h2>" + _fleet_data_section(fleet))
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>predmaint run {_e(run_id)}</title><style>{CSS}</style></head><body>"
            + "\n".join(sections) + "</body></html>\n")
    out = run_dir / "report.html"
    from .lifestore import write_atomically

    write_atomically(out, page)  # a read-only or full folder: one line, no temporary file left
    return out


def summary_lines(run_dir: Path) -> list[str]:
    """A few human lines about the run (for ``predmaint report``)."""
    run_dir = Path(run_dir)
    ev, dec, tuning = _load(run_dir / "evaluation.json"), _load(run_dir / "decision.json"), _load(run_dir / "tuning.json")
    lines = [f"run {run_dir.name}"]
    if ev:
        m = model_metrics(ev)
        base = ev.get("baseline") or {}
        parts = [f"{k}={_fmt(v)}" + (f" (baseline {_fmt(base.get(k))})" if _num(base.get(k)) is not None else "")
                 for k, v in m.items()]
        lines.append("  test metrics: " + ", ".join(parts))
        if _num(ev.get("improvement_pct")) is not None:
            lines.append(f"  improvement over baseline: {ev['improvement_pct']:+.1f}%")
    if tuning and tuning.get("best"):
        b = tuning["best"]
        lines.append(f"  tuning: {len(tuning.get('trials') or [])} trials, best {b.get('algorithm')} "
                     f"{tuning.get('objective', 'objective')}={_fmt(b.get('value'))}")
    if dec:
        lines.append(f"  decision: {dec.get('status')} as model v{dec.get('model_version')}: {dec.get('reason')}")
    return lines
