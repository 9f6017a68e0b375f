"""Local mode of the stateful path: ``predmaint stream`` and ``predmaint fleet`` (docs/streaming.md).

A fleet file (the profile's raw layout) or JSON Lines on stdin is replayed as a stream through the
same core the scoring Lambda runs (``training_src.stream.core``): state in SQLite under the home
(``<home>/stream/state.sqlite``, one transaction per batch, a version check on every row like the
DynamoDB conditional write), the archive as JSON Lines under ``<home>/stream/archive/`` (partitioned
by asset and by day, ``training_src.stream.archive``), the risk events of the decision rule
(``training_src.stream.decisions``, configured in cdk.json ``predmaint.decisions``) as JSON Lines under
``<home>/stream/events/day=<day>/`` and one line each on the terminal. The endpoint is the champion in this process
(the serving code's own ``handle``) or, with ``--url``, a running ``predmaint serve``.
``predmaint fleet --html PATH`` writes the fleet page of this state (``outcomes.write_fleet_page``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_src.stream import archive, core, decisions, model_api, rebuild, state

from .errors import PipelineError, UsageError

#: the fields ``predmaint fleet`` prints, in order
FLEET_FIELDS = ("asset_id", "readings", "last", "rul", "rul_lower", "rul_upper", "failure_probability",
                "model_version", "with_summary", "at_risk", "risk_since")
#: where ``FLEET_FIELDS`` stop being the latest answer's
_ANSWER_FIELDS = FLEET_FIELDS[3:9]


def stream_dir(home: Path) -> Path:
    return Path(home) / "stream"


class Conflict(PipelineError):
    """Another writer changed an asset's state since it was read (the version check failed)."""


class StateStore:
    """Asset states in SQLite: ``assets(asset_id TEXT PRIMARY KEY, version INTEGER, doc TEXT)``."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        # WAL with synchronous=NORMAL: a commit is one append to the log, no fsync; a killed process loses
        # nothing committed (only a power cut can lose the last commits, and then the archive's too)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS assets (asset_id TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                        "doc TEXT NOT NULL)")

    def load(self, ids: Iterable[str]) -> dict[str, state.AssetState | state.StateError]:
        """The stored states of ``ids`` (absent ids: never seen); an unreadable row is a StateError."""
        ids = list(dict.fromkeys(ids))
        out: dict[str, state.AssetState | state.StateError] = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            rows = self.db.execute(f"SELECT asset_id, version, doc FROM assets WHERE asset_id IN "
                                   f"({','.join('?' * len(part))})", part).fetchall()
            for a, v, doc in rows:
                try:
                    out[a] = state.decode(a, v, doc)
                except state.StateError as exc:
                    out[a] = exc
        return out

    def all(self) -> Iterator[state.AssetState | state.StateError]:
        for a, v, doc in self.db.execute("SELECT asset_id, version, doc FROM assets ORDER BY asset_id").fetchall():
            try:
                yield state.decode(a, v, doc)
            except state.StateError as exc:
                yield exc

    def commit(self, states: dict[str, state.AssetState]) -> None:
        """Write ``states`` in one transaction, each only if its stored version is ``version - 1``."""
        docs = {a: state.encode(st) for a, st in states.items()}
        new = [(a, docs[a]) for a, st in states.items() if st.version == 1]
        changed = [(st.version, docs[a], a, st.version - 1) for a, st in states.items() if st.version != 1]
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")  # no other writer until COMMIT: the versions checked stay true
        try:
            ids = list(states)
            stored: dict[str, int] = {}
            for k in range(0, len(ids), 500):
                part = ids[k:k + 500]
                stored.update(cur.execute(f"SELECT asset_id, version FROM assets WHERE asset_id IN "
                                          f"({','.join('?' * len(part))})", part).fetchall())
            for a, st in states.items():
                if stored.get(a, 0) != st.version - 1:
                    raise Conflict(f"asset {a!r}: its state changed since it was read (version {st.version - 1})")
            cur.executemany("INSERT INTO assets VALUES (?, 1, ?)", new)
            cur.executemany("UPDATE assets SET version = ?, doc = ? WHERE asset_id = ? AND version = ?", changed)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Fold the write-ahead log into the database file and close it."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()


class LocalArchive:
    """The archive as JSON Lines files under ``root`` (``<partition>/part.jsonl``, appended)."""

    #: partitions kept open between batches (a replay writes to the same assets' files batch after batch)
    OPEN_FILES = 512

    def __init__(self, root: Path):
        self.root = root
        self._open: dict[str, Any] = {}  # partition -> its file, oldest first

    def write(self, items: list[dict[str, Any]]) -> None:
        """Append ``items``; every line is handed to the OS before this returns (the state commit that
        follows must never refer to readings a killed process still held in a buffer)."""
        touched = []
        for key, lines in archive.group(items).items():
            f = self._open.pop(key, None)
            if f is None:
                path = self.root / key / "part.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                f = path.open("a")
            self._open[key] = f  # most recently used last
            f.write("\n".join(lines) + "\n")
            touched.append(f)
        for f in touched:
            f.flush()
        while len(self._open) > self.OPEN_FILES:
            self._open.pop(next(iter(self._open))).close()

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()

    def lines_of(self, asset_id: str) -> Iterator[str]:
        """One asset's archived readings and events, every day, in day order."""
        base = self.root / archive.asset_prefix(asset_id)
        for path in sorted(base.glob("day=*/part.jsonl")):
            with path.open() as f:
                yield from (line for line in f if line.strip())


class EventLog:
    """Risk events as JSON Lines under ``root`` (``day=<day>/part.jsonl``, appended)."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, events: list[dict[str, Any]], day: str) -> None:
        if not events:
            return
        path = self.root / f"day={day}" / "part.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write("".join(json.dumps(e) + "\n" for e in events))

    def read(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.root.glob("day=*/part.jsonl")):
            with path.open() as f:
                yield from (json.loads(line) for line in f if line.strip())


def event_line(e: dict[str, Any]) -> str:
    """One terminal line for a risk event."""
    if e["type"] == decisions.AT_RISK:
        def num(k: str) -> str:
            v = e.get(k)
            return "-" if v is None else f"{v:.1f}"
        p = e.get("failure_probability")
        within = f" within {e['horizon']:g}" if e.get("horizon") is not None else ""
        rul = f"rul {num('rul')} [{num('rul_lower')}, {num('rul_upper')}], " if "rul" in e else ""
        return (f"{e['type']} {e['asset_id']} at {e['time']:g}: {rul}P(failure{within}) "
                f"{'-' if p is None else f'{p:.3f}'} (threshold {e['threshold']:g}), "
                f"model {e.get('model_version', '-')}")
    return f"{e['type']} {e['asset_id']} at {e['time']:g} ({e['reason']}; at risk since {e['since']:g})"


class HttpScorer:
    """A running endpoint (``predmaint serve``) through ``predmaint.client.LocalClient``."""

    def __init__(self, url: str, timeout: float = 30.0):
        from .client import LocalClient

        self.client = LocalClient(url, timeout=timeout)

    def __call__(self, instances: list[dict[str, Any]]) -> dict[str, Any]:
        return self.score_body(model_api.request_body(instances))

    def score_body(self, request: bytes) -> dict[str, Any]:
        """``__call__`` for a request body already made."""
        from .client import EndpointError

        try:
            body = self.client.invoke_raw(request)
        except EndpointError as exc:
            raise model_api.ScoreError(exc.status or 503, exc.message) from None
        return json.loads(body)


# ------------------------------------------------------------------------------------------ inputs
def fleet_records(df: Any, id_column: str, chunk: int) -> Iterator[dict[str, Any]]:
    """A fleet (the profile's raw layout, read as a frame) as records of ``chunk`` readings per asset,
    assets interleaved (each asset's first record, then each one's second, ...)."""
    queues = []
    for asset, g in df.groupby(id_column, sort=False):
        rows = g.drop(columns=[id_column]).to_dict("records")
        key = str(int(asset)) if isinstance(asset, float) and asset.is_integer() else str(asset)
        queues.append([{"asset_id": key, "readings": rows[i:i + chunk]} for i in range(0, len(rows), chunk)])
    for k in range(max((len(q) for q in queues), default=0)):
        for q in queues:
            if k < len(q):
                yield q[k]


def numbered(records: Iterable[Any], label: str = "record") -> Iterator[tuple[str, int, Any]]:
    """``(where, seq, record)`` with the record's position as its sequence number (1-based)."""
    for i, r in enumerate(records, 1):
        yield f"{label} {i}", i, r


def jsonl_lines(stream: Any) -> Iterator[tuple[str, int | None, Any]]:
    """JSON Lines (stdin, a .jsonl file): each non-blank line a record. Lines carry no stream position
    (the next input's line 1 is a new record, not a replay of this one's): a resent reading is
    recognised by its time, a resent event by its time."""
    for i, line in enumerate(stream, 1):
        if line.strip():
            yield f"line {i}", None, line


# ------------------------------------------------------------------------------------------ running
@dataclass
class StreamSummary:
    records: int = 0
    readings: int = 0
    batches: int = 0
    calls: int = 0
    errors: int = 0
    assets: int = 0
    events: int = 0


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the body with the garbage collector's youngest generation 50,000 allocations deep and
    everything alive before it (the model, the input) out of its scans. Why: a batch allocates
    hundreds of thousands of small dicts and lists (readings, states, archive lines) that form no
    cycles, and the default (700) makes the collector rescan them, a quarter of the replay's time."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(old[0], 50_000), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def run_stream(home: Path, items: Iterable[tuple[str, int, Any]], scorer: core.Scorer, info: model_api.ModelInfo,
               *, batch: int = 500, horizon: float | None = None, day: str | None = None,
               max_instances: int | None = None, errors_to: Any = None, rule: decisions.Rule | None = None,
               events_to: Any = None) -> StreamSummary:
    """Take ``items`` (``(where, seq, record)``) in batches of ``batch`` records: for each, load the
    states, run the core, append the archive, commit the states (one transaction). Errors are printed
    one line each to ``errors_to``; assets the endpoint did not answer stop the run (PipelineError).
    With ``rule``, risk events go to ``<home>/stream/events`` and one line each to ``events_to``
    (default stdout)."""
    root = stream_dir(home)
    store = StateStore(root / "state.sqlite")
    arch = LocalArchive(root / "archive")
    log = EventLog(root / "events")
    summary = StreamSummary()
    buf: list[tuple[str, int, Any]] = []

    def flush() -> None:
        records, errors = core.parse_batch(buf, info)
        states = store.load(r.asset_id for r in records)
        d = day or today()
        res = core.process_batch(records, states, scorer, info, day=d, horizon=horizon,
                                 max_instances=max_instances, rule=rule)
        arch.write(res.archive)  # first: a state never refers to readings the archive lacks
        store.commit(res.states)
        log.write(res.events, d)  # after the commit: an event is never written for a state not kept
        for e in res.events:
            print(f"predmaint stream: {event_line(e)}", file=events_to or sys.stdout)
        summary.events += len(res.events)
        for e in errors + res.errors:
            print(f"predmaint stream: {e}", file=errors_to or sys.stderr)
        for a in sorted(res.dropped):
            if a in res.states:  # the state that dropped it was kept
                print(f"predmaint stream: {res.dropped[a]} (`predmaint stream --rebuild`)", file=errors_to or sys.stderr)
        summary.errors += len(errors) + len(res.errors)
        summary.records += len(buf)
        summary.readings += sum(len(r.readings) for r in records)
        summary.batches += 1
        summary.calls += res.calls
        if res.retry:
            first = sorted(res.retry)[0]
            raise PipelineError(f"the endpoint did not answer for {len(res.retry)} asset(s) (first {first!r}); "
                                "run the same input again to resume")
        buf.clear()

    with fewer_collections():
        try:
            for item in items:
                buf.append(item)
                if len(buf) >= batch:
                    flush()
            if buf:
                flush()
            summary.assets = store.db.execute("SELECT COUNT(*) FROM assets").fetchone()[0]
        finally:
            arch.close()
            store.close()
    return summary


def run_rebuild(home: Path, scorer: core.Scorer, info: model_api.ModelInfo, *, horizon: float | None = None,
                batch: int = 500) -> rebuild.RebuildResult:
    """Summaries for the model behind ``scorer`` for every asset of the local state that needs one."""
    root = stream_dir(home)
    store = StateStore(root / "state.sqlite")
    arch = LocalArchive(root / "archive")
    total = rebuild.RebuildResult()
    readable = [s for s in store.all() if isinstance(s, state.AssetState)]
    for i in range(0, len(readable), batch):
        res = rebuild.rebuild(readable[i:i + batch], arch.lines_of, scorer, info, horizon=horizon)
        commit_rebuilt(store, res.states, info.fingerprint)
        total.states.update(res.states)
        total.errors.update(res.errors)
        total.skipped += res.skipped
    return total


def commit_rebuilt(store: StateStore, rebuilt: dict[str, state.AssetState], fingerprint: str) -> int:
    """Lay rebuilt summaries onto the assets' current states (the stream may have moved on since the
    cut: ``rebuild.merge``), one transaction; returns how many were applied."""
    current = store.load(rebuilt)
    merged = {}
    for a, st in rebuilt.items():
        cur = current.get(a)
        if isinstance(cur, state.AssetState):
            m = rebuild.merge(cur, st, fingerprint)
            if m is not None:
                merged[a] = m
    store.commit(merged)
    return len(merged)


def fleet_rows(home: Path) -> list[dict[str, Any]]:
    """Every asset's latest state as ``FLEET_FIELDS`` (an unreadable row: its asset and ``error``)."""
    path = stream_dir(home) / "state.sqlite"
    if not path.is_file():
        raise UsageError(f"no stream state under {stream_dir(home)}: run `predmaint stream` first")
    rows = []
    for st in StateStore(path).all():
        if isinstance(st, state.StateError):
            rows.append({"asset_id": st.asset_id, "error": str(st)})
            continue
        ans = st.answer or {}
        rows.append({"asset_id": st.asset_id, "readings": st.taken, "last": st.last,
                     **{k: ans.get(k) for k in _ANSWER_FIELDS}, "at_risk": st.at_risk, "risk_since": st.risk_since})
    return rows


def in_process(model_dir: Path, version: str | None) -> model_api.InProcessScorer:
    """The model of ``model_dir`` served in this process by the serving code (answers carry ``version``)."""
    model = model_api.load_model(model_dir)
    if version:
        model.version = version
    try:
        return model_api.InProcessScorer(model)
    except ValueError as exc:
        raise UsageError(f"model {model_dir}: {exc}") from None


def print_fleet(rows: list[dict[str, Any]], as_json: bool, out: Any = None) -> None:
    out = out or sys.stdout
    if as_json:
        for r in rows:
            print(json.dumps(r), file=out)
        return
    print(" ".join(f"{h:>12}" for h in FLEET_FIELDS), file=out)
    for r in rows:
        if "error" in r:
            print(f"{r['asset_id']:>12} error: {r['error']}", file=out)
            continue
        cells = []
        for k in FLEET_FIELDS:
            v = r.get(k)
            cells.append(f"{v:>12.3f}" if isinstance(v, float) else f"{'-' if v is None else v!s:>12}")
        print(" ".join(cells), file=out)


# ------------------------------------------------------------------------------------------ commands


def decision_rule(horizon: float | None = None) -> decisions.Rule:
    """The deployment's decision rule (cdk.json ``predmaint.decisions`` through ``deployment.load``);
    ``horizon`` (``--horizon``) replaces its H."""
    from dataclasses import replace

    from . import deployment

    rule = deployment.load().decision_rule()  # load() validated it: a bad rule is a one-line UsageError
    return rule if horizon is None or rule.horizon is None else replace(rule, horizon=float(horizon))


def _model(args: Any) -> tuple[Path, str | None, Any]:
    """(model dir, registry version, loaded model): --model-dir, --model VERSION or the champion."""
    from . import registry as reg

    if args.model_dir is not None:
        path = Path(args.model_dir)
        reg.check_model_dir(path)
        version = None
    else:
        registry = reg.Registry(args.home)
        package = registry.resolve(args.model)
        path, version = registry.model_dir(package.version), str(package.version)
    return path, version, in_process(path, version)


def _input_items(args: Any, scorer: model_api.InProcessScorer) -> Iterator[tuple[str, int, Any]]:
    if args.input == "-":
        return jsonl_lines(sys.stdin)
    from . import scoring

    path = Path(args.input)
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        import gzip

        if not path.is_file():
            raise UsageError(f"input file {path} does not exist")
        opener = gzip.open if path.name.endswith(".gz") else open
        return jsonl_lines(opener(path, "rt"))
    profile = scorer.model.spec.profile_obj
    df = scoring.read_fleet(path, profile)
    return numbered(fleet_records(df, profile.id_column, args.chunk))


def cmd_stream(args: Any) -> int:
    """``predmaint stream``: replay a fleet file (or JSON Lines) as a stream; ``--rebuild`` instead
    builds the summaries of the model for every asset that needs one."""
    if args.input is None and not args.rebuild:  # before the model loads
        raise UsageError("--input FILE (or - for JSON Lines on stdin) is required unless --rebuild")
    if args.input is not None and args.rebuild:
        raise UsageError("--rebuild takes no --input: it reads the archive under the home")
    model_dir, version, local = _model(args)
    rule = decision_rule(args.horizon)
    horizon = rule.horizon if local.model.intervals is not None else None
    scorer: core.Scorer = HttpScorer(args.url) if args.url else local
    if args.rebuild:
        res = run_rebuild(args.home, scorer, local.info, horizon=horizon)
        for msg in res.errors.values():
            print(f"predmaint stream: {msg}", file=sys.stderr)
        print(f"rebuilt {len(res.states)} asset(s) for model {version or model_dir} "
              f"({res.skipped} up to date, {len(res.errors)} failed)")
        return 1 if res.errors else 0
    summary = run_stream(args.home, _input_items(args, local), scorer, local.info, batch=args.batch,
                         horizon=horizon, max_instances=args.max_instances, rule=rule)
    print(f"streamed {summary.records} records ({summary.readings} readings) in {summary.batches} batches, "
          f"{summary.calls} endpoint calls; {summary.assets} assets in {stream_dir(args.home)}; "
          f"{summary.errors} record(s) refused; {summary.events} risk event(s)")
    return 2 if summary.errors else 0


def cmd_fleet(args: Any) -> int:
    """``predmaint fleet``: every asset's latest state (``--html``: ``outcomes.cmd_fleet_page`` follows)."""
    print_fleet(fleet_rows(args.home), args.json)
    return 0


def after_promotion(home: Path, champion_before: str | None) -> rebuild.RebuildResult | None:
    """``predmaint run``'s hook: when the run made a new champion and a stream state exists under
    ``home``, build every asset's summary for it (``run_rebuild``). None when there was nothing to do."""
    from . import registry as reg

    if not (stream_dir(home) / "state.sqlite").is_file():
        return None
    registry = reg.Registry(home)
    champion = registry.champion()
    if champion is None or str(champion.version) == champion_before:
        return None
    scorer = in_process(registry.model_dir(champion.version), str(champion.version))
    horizon = decision_rule().horizon if scorer.model.intervals is not None else None
    return run_rebuild(home, scorer, scorer.info, horizon=horizon)
