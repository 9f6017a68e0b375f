"""Local mode's outcomes and live quality: ``predmaint outcome add`` and ``predmaint quality`` (docs/decisions.md).

An outcome is the stream's event record, ``{"asset_id", "event": "failure" | "maintenance", "time"}``:
``outcome add`` checks every outcome against the stream state first (the asset is known, the time is
not before the asset's first reading nor before its last one, no second failure of a life that
already failed) and only then takes them all in through the stream core, which archives them and
ends the assets' lives. One bad outcome: a one-line error naming it, and nothing changes.
``quality`` joins the archived answers with the archived failures and the risk events
(``training_src.stream.quality``), and writes every failed life as a training history under
``<home>/fleet-data`` (``fleetdata.export_failures``). ``write_fleet_page`` (``predmaint fleet --html``)
renders the fleet page (``training_src.stream.fleet_page``) with those same quality figures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training_src.stream import quality, state
from training_src.stream.records import RecordError, parse_record

from .errors import UsageError
from .streaming import EventLog, LocalArchive, StateStore, decision_rule, run_stream, stream_dir


def _history(arch: LocalArchive, asset: str) -> list[dict[str, Any]]:
    from training_src.stream import jsonio

    return [jsonio.loads(line) for line in arch.lines_of(asset)]


def check_outcomes(home: Path, raw: list[tuple[str, Any]], time_column: str) -> list[tuple[str, int | None, Any]]:
    """The outcomes (``(where, record)``) as stream items, once each is checked against the state;
    UsageError naming the first bad one (nothing is written)."""
    path = stream_dir(home) / "state.sqlite"
    if not path.is_file():
        raise UsageError(f"no stream state under {stream_dir(home)}: run `predmaint stream` first")
    store = StateStore(path)
    arch = LocalArchive(stream_dir(home) / "archive")
    parsed = []
    for where, doc in raw:
        try:
            rec = parse_record(doc, where, time_column)
        except RecordError as exc:
            raise UsageError(str(exc)) from None
        if rec.event is None:
            raise UsageError(f"{where}: an outcome is {{\"asset_id\", \"event\": \"failure\" | \"maintenance\", "
                             "\"time\"}, not readings")
        parsed.append(rec)
    states = store.load(r.asset_id for r in parsed)
    # per asset: (first reading ever, last reading of the life, time and kind of the last outcome, readings since)
    seen: dict[str, list[Any]] = {}
    for rec in parsed:
        st = states.get(rec.asset_id)
        if st is None:
            raise UsageError(f"{rec.where}: asset {rec.asset_id!r} is unknown (no reading of it was streamed)")
        if isinstance(st, state.StateError):
            raise UsageError(f"{rec.where}: {st}")
        if rec.asset_id not in seen:
            items = _history(arch, rec.asset_id)
            times = [i["time"] for i in items if i.get("type") == "reading"]
            events = [i for i in items if i.get("type") == "event"]
            last_event = max(events, key=lambda i: i["time"]) if events else None
            seen[rec.asset_id] = [min(times) if times else None, st.last,
                                  None if last_event is None else last_event["time"],
                                  None if last_event is None else last_event["event"], st.taken]
        first, last, ev_time, ev_kind, taken = seen[rec.asset_id]
        t = rec.time
        if first is None or t < first:
            raise UsageError(f"{rec.where}: asset {rec.asset_id!r}: time {t:g} is before its first reading "
                             f"({'none' if first is None else f'{first:g}'})")
        if ev_kind == "failure" and rec.event == "failure" and taken == 0:
            raise UsageError(f"{rec.where}: asset {rec.asset_id!r}: duplicate failure (its life already ended "
                             f"with a failure at {ev_time:g} and no reading came since)")
        if ev_time is not None and t <= ev_time:
            raise UsageError(f"{rec.where}: asset {rec.asset_id!r}: time {t:g} is not after its last recorded "
                             f"{ev_kind} at {ev_time:g}")
        if last is not None and t < last:
            raise UsageError(f"{rec.where}: asset {rec.asset_id!r}: time {t:g} is before its last reading ({last:g})")
        seen[rec.asset_id] = [first, None, t, rec.event, 0]
    return [(rec.where, None, raw_doc) for rec, (_, raw_doc) in zip(parsed, raw, strict=True)]


def _read_file(path: Path) -> list[tuple[str, Any]]:
    """Outcomes from a JSON Lines file (one object a line) or a JSON list."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"--file {path}: cannot read ({exc.strerror or exc})") from None
    if text.lstrip().startswith("["):
        try:
            docs = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--file {path}: not JSON ({exc})") from None
        return [(f"{path.name} item {i}", d) for i, d in enumerate(docs, 1)]
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path.name} line {i}", json.loads(line)))
            except ValueError as exc:
                raise UsageError(f"{path.name} line {i}: not JSON ({str(exc).splitlines()[0][:80]})") from None
    if not out:
        raise UsageError(f"--file {path}: no outcomes in it")
    return out


def cmd_outcome_add(args: Any) -> int:
    """``predmaint outcome add``: record failures or maintenance actions (one, or a file of them)."""
    from .streaming import _model

    if (args.file is None) == (args.asset is None):
        raise UsageError("give --asset, --event and --time for one outcome, or --file F for many")
    if args.file is not None:
        if args.event is not None or args.time is not None:
            raise UsageError("--file takes no --event or --time: each line names its own")
        raw = _read_file(Path(args.file))
    else:
        if args.event is None or args.time is None:
            raise UsageError("--asset needs --event (failure or maintenance) and --time")
        raw = [("outcome", {"asset_id": args.asset, "event": args.event, "time": args.time})]
    _, _, local = _model(args)
    items = check_outcomes(args.home, raw, local.info.time_column)
    rule = decision_rule()
    summary = run_stream(args.home, items, local, local.info, rule=rule)
    print(f"recorded {summary.records} outcome(s); {summary.events} risk episode(s) closed")
    return 0


def read_quality_inputs(home: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]],
                                              dict[tuple[str, int], float]]:
    """(answers, archived events, risk events, (asset, life) -> last reading time) of the local stream."""
    root = stream_dir(home)
    if not (root / "state.sqlite").is_file():
        raise UsageError(f"no stream state under {root}: run `predmaint stream` first")
    arch = root / "archive"
    answers, events = [], []
    for path in sorted(arch.glob("answers/day=*/asset=*/part.jsonl")):
        answers += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for path in sorted(arch.glob("readings/asset=*/day=*/part.jsonl")):
        events += [i for i in map(json.loads, filter(str.strip, path.read_text().splitlines()))
                   if i.get("type") == "event"]
    last_seen = {(s.asset_id, s.life_no): s.last for s in StateStore(root / "state.sqlite").all()
                 if isinstance(s, state.AssetState) and s.last is not None}
    return answers, events, list(EventLog(root / "events").read()), last_seen


QUALITY_FIELDS = ("model_version", "answers", "failures", "alerts", "rmse", "rmse_capped", "coverage", "recall",
                  "precision", "early_alerts", "median_lead")


def live_quality(home: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], Any]:
    """(figures per model version, the archived answers, the deployment's profile) of the local stream,
    with the deployment's decision rule and the profile's RUL cap."""
    from training_src.profiles import load_profile

    from . import deployment

    cfg = deployment.load()
    rule = decision_rule()
    profile = load_profile(cfg.profile, cfg.subset)
    answers, events, risk, last_seen = read_quality_inputs(home)
    figures = quality.quality(answers, events, risk, horizon=rule.horizon, lead=rule.min_lead or 0.0,
                              cap=profile.label.cap, last_seen=last_seen)
    return figures, answers, profile


def cmd_quality(args: Any) -> int:
    """``predmaint quality``: live model quality per model version."""
    figures, _, profile = live_quality(args.home)
    if profile.is_regression:  # the failed lives as training histories (what the AWS quality job writes to raw/)
        from .fleetdata import export_failures, fleet_data_dir

        exported, left_out = export_failures(args.home, profile)
        for line in left_out:
            print(f"predmaint quality: not exported: {line}", file=sys.stderr)
        if exported:
            print(f"predmaint quality: {len(exported)} failure histories ({sum(e.changed for e in exported)} new or "
                  f"changed, {sum(e.history.rows for e in exported)} rows) in {fleet_data_dir(args.home)}",
                  file=sys.stderr)
    if args.json:
        for version, f in figures.items():
            print(json.dumps({"model_version": version, **f}))
        return 0
    print(" ".join(f"{h:>13}" for h in QUALITY_FIELDS))
    for version, f in figures.items():
        row = {"model_version": version, **f}
        print(" ".join(f"{v:>13.3f}" if isinstance(v, float) else f"{'-' if v is None else v!s:>13}"
                       for v in (row[k] for k in QUALITY_FIELDS)))
    if not figures:
        print("no archived answers yet", file=sys.stderr)
    return 0


def fleet_history(home: Path, answers: Iterable[dict[str, Any]], last: int | None = None
                  ) -> dict[str, list[dict[str, Any]]]:
    """Asset -> its archived answers (``answers``: archive ``answer`` items) of its current life (``time``,
    ``rul``, ``rul_lower``, ``rul_upper``, ``failure_probability``), time-ordered, the ``last`` most recent
    (None: ``fleet_page.HISTORY``)."""
    from training_src.stream import fleet_page

    last = fleet_page.HISTORY if last is None else last
    lives = {st.asset_id: st.life_no for st in StateStore(stream_dir(home) / "state.sqlite").all()
             if isinstance(st, state.AssetState)}
    out: dict[str, dict[float, dict[str, Any]]] = {}
    for item in answers:
        a = str(item.get("asset_id"))
        if a not in lives or item.get("life") != lives[a]:
            continue
        ans = item.get("answer") or {}
        out.setdefault(a, {}).setdefault(item["time"], {"time": item["time"], **{
            k: ans.get(k) for k in ("rul", "rul_lower", "rul_upper", "failure_probability")}})
    return {a: [pts[t] for t in sorted(pts)][-last:] for a, pts in out.items()}


def write_fleet_page(home: Path, path: Path, drift_result: Path | None = None) -> int:
    """Write the fleet page (``training_src.stream.fleet_page``) of the local stream to ``path``
    (atomically); returns how many assets it shows. Quality figures as ``predmaint quality`` computes them."""
    from datetime import UTC, datetime

    from training_src.stream import fleet_page

    from .lifestore import write_atomically
    from .streaming import fleet_rows

    rows = fleet_rows(home)
    drift = None
    if drift_result is not None:
        try:
            drift = json.loads(Path(drift_result).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--drift-result {drift_result}: cannot read a drift result ({exc})") from None
        if not isinstance(drift, dict) or "drift" not in drift:
            raise UsageError(f"--drift-result {drift_result}: not a drift result (no 'drift' field)")
    figures, answers, profile = live_quality(home)
    page = fleet_page.render_fleet_page(rows, fleet_history(home, answers), figures, drift,
                                        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                                        title=f"Fleet · {profile.name} {profile.subset or ''}".strip())
    try:
        write_atomically(Path(path), page)
    except OSError as exc:
        raise UsageError(f"--html {path}: cannot write ({exc.strerror or exc})") from None
    return len(rows)


def cmd_fleet_page(args: Any) -> int:
    """``predmaint fleet --html PATH [--drift-result FILE]``: write the fleet page (after the table)."""
    n = write_fleet_page(args.home, Path(args.html), args.drift_result)
    print(f"fleet page: {n} assets in {args.html}", file=sys.stderr)
    return 0
