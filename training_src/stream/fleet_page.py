"""The fleet page: one self-contained HTML string (inline CSS and SVG, no script, nothing fetched).

``render_fleet_page`` takes what the stream keeps: each asset's latest state (the rows of
``predmaint fleet --json``), its recent archived answers, the live quality figures per model version
(``quality.quality``) and the latest drift result (``training_src.drift``'s ``drift_result.json``), and
answers a page: quality and drift on top, then the assets ranked by risk (``rank``: at risk first,
then by failure probability, highest first, then by RUL, lowest first), each with its RUL and interval,
failure probability, a sparkline of its recent answers (RUL line, interval band) and its open episode.
Every value from the inputs is escaped. Pure Python: local mode (``predmaint fleet --html``) and the
AWS quality job render the same page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from .decisions import AT_RISK

#: answers shown per asset in its sparkline (the most recent of its current life)
HISTORY = 40

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px}.sub{color:#667;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;
padding:10px 14px;min-width:120px}.card .v{font-size:20px;font-weight:600}.card .k{color:#667;font-size:12px}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e7;border-radius:8px;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid #eef0f3;text-align:right;white-space:nowrap}
th{font-size:12px;color:#556;font-weight:600;background:#fafbfc}td.id,th.id{text-align:left}
tr.risk td{background:#fff4f2}tr.risk td:first-child{border-left:4px solid #d9381e}
th.spark,td.spark{text-align:left}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600}
.badge.risk{background:#d9381e;color:#fff}.badge.ok{background:#e3f4e8;color:#1f7a3a}
.badge.drift{background:#d9381e;color:#fff}.badge.nodrift{background:#e3f4e8;color:#1f7a3a}
.badge.unknown{background:#e8eaee;color:#556}.muted{color:#889}
svg.spark{display:block}svg.spark .band{fill:#c9d7f2}svg.spark .line{fill:none;stroke:#2856b6;stroke-width:1.5}
svg.spark .zero{stroke:#d9381e;stroke-width:1;stroke-dasharray:2 2}
"""


def _num(v: Any) -> float | None:
    return float(v) if type(v) in (int, float) and math.isfinite(v) else None


def rank(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows ordered by risk: at risk first, then failure probability (highest first, none last),
    then RUL (lowest first, none last), then asset id; rows with an ``error`` last."""
    def key(r: dict[str, Any]) -> tuple:
        p, rul = _num(r.get("failure_probability")), _num(r.get("rul"))
        return ("error" in r, not r.get("at_risk"), p is None, -(p or 0.0), rul is None, rul or 0.0,
                str(r.get("asset_id")))
    return sorted(rows, key=key)


def from_archive(answers: Iterable[dict[str, Any]], outcomes: Iterable[dict[str, Any]] = (),
                 risk: Iterable[dict[str, Any]] = (), last: int = HISTORY
                 ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The page's ``rows`` and ``history`` from the stream archive alone (the AWS quality job reads the
    archive, not the state table).

    ``answers``: archive ``answer`` items (``asset_id``, ``life``, ``time``, ``answer``); ``outcomes``:
    archive ``event`` items; ``risk``: archived risk events. An asset's row is its latest life's latest
    answer; ``readings`` is unknown here (None); ``at_risk``/``risk_since`` follow the life's latest risk
    event. A life ended by a recorded failure or maintenance shows no answer: its next life has none yet."""
    latest: dict[str, dict[str, Any]] = {}
    points: dict[tuple[str, int], dict[float, dict[str, Any]]] = {}
    for item in answers:
        a, life, t = str(item["asset_id"]), int(item["life"]), float(item["time"])
        cur = latest.get(a)
        if cur is None or (life, t) > (int(cur["life"]), float(cur["time"])):
            latest[a] = item
        ans = item.get("answer") or {}
        points.setdefault((a, life), {}).setdefault(t, {"time": t, **{
            k: ans.get(k) for k in ("rul", "rul_lower", "rul_upper", "failure_probability")}})
    ended = {(str(o["asset_id"]), int(o["life"])): float(o["time"]) for o in outcomes}
    episode: dict[tuple[str, int], dict[str, Any]] = {}
    for ev in risk:
        k = (str(ev["asset_id"]), int(ev["life"]))
        if k not in episode or float(ev["time"]) >= float(episode[k]["time"]):
            episode[k] = ev
    rows, history = [], {}
    for a, item in latest.items():
        life = int(item["life"])
        if (a, life) in ended:
            rows.append({"asset_id": a, "readings": None, "last": ended[(a, life)], "at_risk": False,
                         "risk_since": None})
            continue
        ans = item.get("answer") or {}
        ev = episode.get((a, life))
        at_risk = bool(ev is not None and ev.get("type") == AT_RISK)
        rows.append({"asset_id": a, "readings": None, "last": item["time"],
                     **{k: ans.get(k) for k in ("rul", "rul_lower", "rul_upper", "failure_probability",
                                                "model_version", "with_summary")},
                     "at_risk": at_risk, "risk_since": ev["time"] if at_risk else None})
        pts = points[(a, life)]
        history[a] = [pts[t] for t in sorted(pts)][-last:]
    return rows, history


def _fmt(v: Any, digits: int = 1) -> str:
    x = _num(v)
    return "–" if x is None else f"{x:.{digits}f}"


def sparkline(points: Sequence[dict[str, Any]], width: int = 160, height: int = 36) -> str:
    """An inline SVG of answers (``time``, ``rul``, ``rul_lower``, ``rul_upper``): the RUL line over the
    interval band, y from 0 (dashed) up. Empty string for fewer than two answers with a RUL."""
    pts = [p for p in points if _num(p.get("time")) is not None and _num(p.get("rul")) is not None]
    if len(pts) < 2:
        return ""
    ts = [float(p["time"]) for p in pts]
    ys = [float(p["rul"]) for p in pts]
    lo = [_num(p.get("rul_lower")) for p in pts]
    hi = [_num(p.get("rul_upper")) for p in pts]
    top = max([*ys, *(h for h in hi if h is not None)]) or 1.0
    t0, t1 = min(ts), max(ts)
    span = (t1 - t0) or 1.0

    def x(t: float) -> str:
        return f"{2 + (t - t0) / span * (width - 4):.1f}"

    def y(v: float) -> str:
        return f"{height - 2 - max(v, 0.0) / top * (height - 4):.1f}"

    band = ""
    if all(v is not None for v in lo + hi):
        upper = " ".join(f"{x(t)},{y(h)}" for t, h in zip(ts, hi, strict=True))
        lower = " ".join(f"{x(t)},{y(v)}" for t, v in zip(reversed(ts), reversed(lo), strict=True))
        band = f"<polygon class='band' points='{upper} {lower}'/>"
    line = " ".join(f"{x(t)},{y(v)}" for t, v in zip(ts, ys, strict=True))
    return (f"<svg class='spark' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
            f"xmlns='http://www.w3.org/2000/svg' role='img' aria-label='recent RUL answers'>{band}"
            f"<line class='zero' x1='0' x2='{width}' y1='{y(0.0)}' y2='{y(0.0)}'/>"
            f"<polyline class='line' points='{line}'/></svg>")


def _quality_section(quality: dict[str, dict[str, Any]] | None) -> str:
    if not quality:
        return "<p class='muted'>No live quality figures yet (no recorded failure has an archived answer).</p>"
    cols = [("model_version", "model", 0), ("failures", "failures", 0), ("answers", "answers", 0),
            ("rmse", "RMSE", 2), ("rmse_capped", "RMSE (capped)", 2), ("coverage", "interval coverage", 3),
            ("recall", "alert recall", 3), ("precision", "alert precision", 3), ("median_lead", "median lead", 1)]
    head = "".join(f"<th{' class=id' if k == 'model_version' else ''}>{escape(h)}</th>" for k, h, _ in cols)
    body = []
    for version, f in quality.items():
        row = {"model_version": version, **f}
        cells = []
        for k, _, d in cols:
            v = row.get(k)
            text = escape(str(v)) if k == "model_version" else (_fmt(v, d) if isinstance(v, float)
                                                                else escape("–" if v is None else str(v)))
            cells.append(f"<td{' class=id' if k == 'model_version' else ''}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table id='quality'><tr>{head}</tr>{''.join(body)}</table>"


def _drift_card(drift: dict[str, Any] | None) -> tuple[str, str]:
    """(value, label) of the drift card: a badge, and what was tested (the first drifted columns)."""
    if not drift or "drift" not in drift:
        return "<span class='badge unknown'>not checked</span>", "drift"
    tests = escape(str(drift.get("tests", "?")))
    if drift["drift"]:
        drifted = [t for t in drift.get("drifted", []) if isinstance(t, dict)]
        names = ", ".join(dict.fromkeys(str(t.get("column", "?")) for t in drifted))
        shown = names if len(names) <= 60 else names[:57] + "..."
        return ("<span class='badge drift'>drift</span>",
                f"drift: {len(drifted)} of {tests} tests ({escape(shown)})")
    return "<span class='badge nodrift'>no drift</span>", f"drift: 0 of {tests} tests"


def render_fleet_page(rows: Iterable[dict[str, Any]], history: dict[str, Sequence[dict[str, Any]]] | None = None,
                      quality: dict[str, dict[str, Any]] | None = None, drift: dict[str, Any] | None = None,
                      *, generated: str = "", title: str = "Fleet") -> str:
    """The fleet page as one HTML string.

    ``rows``: each asset's latest state (``asset_id``, ``readings``, ``last``, ``rul``, ``rul_lower``,
    ``rul_upper``, ``failure_probability``, ``model_version``, ``with_summary``, ``at_risk``,
    ``risk_since``; a row with ``error`` is shown as unreadable); ``history``: asset -> its recent answers
    (``time``, ``rul``, ``rul_lower``, ``rul_upper``), time-ordered, the last ``HISTORY`` are drawn;
    ``quality``: model version -> live figures; ``drift``: the latest drift result (None: not checked);
    ``generated``: when the page was made (shown as given)."""
    ranked = rank(rows)
    history = history or {}
    at_risk = sum(1 for r in ranked if r.get("at_risk"))
    drift_html, drift_label = _drift_card(drift)
    cards = [(str(len(ranked)), "assets"), (str(at_risk), "at risk")]
    card_html = "".join(f"<div class='card'><div class='v'>{escape(v)}</div><div class='k'>{escape(k)}</div></div>"
                        for v, k in cards)
    card_html += f"<div class='card' id='drift'><div class='v'>{drift_html}</div><div class='k'>{drift_label}</div></div>"
    head = ("<tr><th>#</th><th class='id'>asset</th><th>status</th><th>RUL</th><th>80% interval</th>"
            "<th>P(failure)</th><th class='spark'>recent answers</th><th>at risk since</th><th>readings</th><th>last</th>"
            "<th class='id'>model</th></tr>")
    body = []
    for i, r in enumerate(ranked, 1):
        aid = escape(str(r.get("asset_id")))
        if "error" in r:
            body.append(f"<tr class='asset' data-asset='{aid}'><td>{i}</td><td class='id'>{aid}</td>"
                        f"<td colspan='9' class='id muted'>unreadable state: {escape(str(r['error']))}</td></tr>")
            continue
        risk = bool(r.get("at_risk"))
        status = "<span class='badge risk'>at risk</span>" if risk else "<span class='badge ok'>ok</span>"
        interval = (f"[{_fmt(r.get('rul_lower'))}, {_fmt(r.get('rul_upper'))}]"
                    if _num(r.get("rul_lower")) is not None else "–")
        spark = sparkline(list(history.get(str(r.get("asset_id")), []))[-HISTORY:]) or "<span class='muted'>–</span>"
        body.append(
            f"<tr class='asset{' risk' if risk else ''}' data-asset='{aid}' data-at-risk='{str(risk).lower()}'>"
            f"<td>{i}</td><td class='id'>{aid}</td><td>{status}</td><td>{_fmt(r.get('rul'))}</td><td>{interval}</td>"
            f"<td>{_fmt(r.get('failure_probability'), 3)}</td><td class='spark'>{spark}</td>"
            f"<td>{_fmt(r.get('risk_since'), 0) if risk else '–'}</td><td>{escape(str(r.get('readings', '–')))}</td>"
            f"<td>{_fmt(r.get('last'), 0)}</td><td class='id'>{escape(str(r.get('model_version') or '–'))}</td></tr>")
    sub = f"{len(ranked)} assets ranked by risk" + (f" · generated {escape(generated)}" if generated else "")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><p class='sub'>{sub}</p><div class='cards'>{card_html}</div>"
            f"<h2>Live model quality</h2>{_quality_section(quality)}"
            f"<h2>Assets</h2><table id='fleet'>{head}{''.join(body)}</table></body></html>\n")
