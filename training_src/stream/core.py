"""One batch of stream records through the endpoint: the new states, what to archive, per-record errors.

``process_batch`` is the whole logic of the stateful path; local mode (``predmaint stream``), the
scoring Lambda and the rebuild after a promotion call it (or its helpers) and only differ in where
states and the archive live. Semantics (docs/streaming.md):

- per asset, records are taken in stream order (``seq``); a record at or before the asset's stored
  ``seq`` is a replay and changes nothing; a reading at or before the stored ``last`` time is a
  duplicate and changes nothing; within a batch an asset's readings are merged and sorted by time;
- an event (maintenance, failure) ends the life: the next reading starts a new summary;
- each asset with new readings is one instance: its stored tail (the last W-1 readings) + the new
  readings, with its summary for the serving model when it has one that the tail can bring up to
  date, ``{}`` while the tail still holds the whole life (its start), else none (the answer is the window's and carries the
  contract's warning: never a summary of another model or one that missed readings);
- all instances go to the endpoint together, split only to respect its limits (instances per
  request, 6 MB); a refused request is retried instance by instance so one bad asset fails alone;
- a bad record, an unreadable state or a refused instance fails that asset only (its state is left
  as it was); the endpoint being unreachable fails the assets it was asked about (``retry``);
- with a decision rule (``decisions.py``), each new answer is evaluated: entering risk emits
  ``AssetAtRisk``, leaving it (or an event ending the life) ``AssetRiskCleared``, once per episode
  (``BatchResult.events``: local mode writes them as JSON Lines; on AWS they are to be published).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import decisions, jsonio, model_api
from .records import Record, RecordError, parse_record
from .state import AssetState, StateError, evolve

#: instances -> the endpoint's 200 document. A scorer may also have ``score_body(request body bytes)``:
#: ``score_all`` then sends the instances' JSON it made for ``pack`` instead of encoding them again
Scorer = Callable[[list[dict[str, Any]]], dict[str, Any]]
#: margin under the endpoint's 6 MB for the request's envelope
BODY_MARGIN = 64 * 1024
#: readings the tail may hold beyond W-1 while the serving model's summary lags behind it (another
#: model answered the asset meanwhile: a canary, or one rolled back), so the summary is caught up when
#: the serving model answers again instead of being dropped. Past it the summary is dropped and reported
HOLD = 200


@dataclass
class BatchResult:
    """``states``: the assets whose state changed (``version`` already incremented; write each only if
    the stored version is still ``version - 1``); ``archive``: the items to archive (``archive.py``);
    ``errors``: per-record errors (permanent: the record is refused); ``retry``: asset -> why it
    must be retried (the endpoint failed), its records untouched; ``events``: the risk events of the
    states written (``decisions.py``), in order per asset; ``dropped``: asset -> why its summary for the
    serving model was dropped (it lagged more than ``HOLD`` readings: the asset is answered from its
    window until a rebuild makes it again)."""

    states: dict[str, AssetState] = field(default_factory=dict)
    archive: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    retry: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    calls: int = 0


def bootstrap_info(time_column: str) -> model_api.ModelInfo:
    """What the stream knows before any model does: the profile's time column. With it (and no scorer),
    ``process_batch`` takes every record in without an answer, each state keeping the last ``HOLD``
    readings, so the first model's summaries start from the tail (exactly) where a life is shorter,
    and the rebuild makes the others from the archive. Readings are checked for their time only."""
    return model_api.ModelInfo(fingerprint="", window=HOLD + 1, time_column=time_column, required=(time_column,),
                               reads_life=False, warning="", max_body_bytes=6 * 1024 * 1024,  # the contract's limits
                               max_instances=1000, max_readings=10_000)


def parse_batch(items: Iterable[tuple[str, int | None, Any]], info: model_api.ModelInfo
                ) -> tuple[list[Record], list[RecordError]]:
    """``(where, seq, raw record)`` items -> the valid records and an error for each bad one."""
    records, errors = [], []
    limit = info.max_readings - max(info.window - 1, HOLD)  # an instance is the tail + the new readings
    for where, seq, raw in items:
        try:
            records.append(parse_record(raw, where, info.time_column, info.required, seq, limit))
        except RecordError as exc:
            errors.append(exc)
    return records, errors


@dataclass
class _Segment:
    """New readings of one life of one asset in this batch, on top of ``base`` (the state before them)."""

    base: AssetState
    new: dict[float, dict[str, Any]] = field(default_factory=dict)
    seqs: dict[float, int | None] = field(default_factory=dict)  # time -> the record that brought it


def usable_summary(state: AssetState, fingerprint: str) -> dict[str, Any] | None:
    """The asset's summary for ``fingerprint`` if the stored tail can bring it up to date (no reading
    it misses has left the tail), else None."""
    s = state.summaries.get(fingerprint)
    if s is None or type(s.get("last")) not in (int, float):
        return None
    if state.evicted is not None and s["last"] < state.evicted:
        return None
    return s


def _segments(state: AssetState, recs: list[Record], t: str, archive: list[dict[str, Any]], day: str
              ) -> tuple[list[_Segment], AssetState, bool]:
    """Split an asset's records into lives; returns the segments, the state after the events and seqs,
    and whether anything was taken in."""
    recs = sorted(recs, key=lambda r: -1 if r.seq is None else r.seq)  # stable: stream order
    cur = state
    segs = [_Segment(cur)]
    taken = False
    for rec in recs:
        if rec.seq is not None and cur.seq is not None and rec.seq <= cur.seq:
            continue  # a replayed record
        seq = rec.seq if rec.seq is not None else cur.seq
        if rec.event is not None:
            if cur.ended is not None and rec.time <= cur.ended:
                continue  # this event (or a later one) already ended the life
            archive.append({"type": "event", "asset_id": cur.asset_id, "life": cur.life_no, "seq": rec.seq,
                            "event": rec.event, "time": rec.time, "day": day})
            cur = evolve(cur.new_life(rec.time), seq=seq)
            segs.append(_Segment(cur))
            taken = True
            continue
        seg = segs[-1]
        for r in rec.readings:
            time = r[t]
            if (seg.base.last is not None and time <= seg.base.last) or time in seg.new:
                continue  # a duplicate reading
            seg.new[time] = r
            seg.seqs[time] = rec.seq
            taken = True
        if seq != cur.seq:
            cur = evolve(cur, seq=seq)
    return segs, cur, taken  # segments without new readings: lives ended before any reading


def _instance(seg: _Segment, info: model_api.ModelInfo, horizon: float | None) -> tuple[dict[str, Any], bool]:
    """The endpoint instance of a segment and whether it carries a summary to continue or start."""
    base = seg.base
    new = [seg.new[k] for k in sorted(seg.new)]
    inst: dict[str, Any] = {"asset_id": base.asset_id, "readings": list(base.tail) + new}
    life = None
    if info.reads_life:
        life = usable_summary(base, info.fingerprint)
        if life is None and base.evicted is None and len(base.tail) == base.taken:
            # the tail still holds the whole life (its start, or a young asset that another model
            # answered until now: a canary, a promotion): the summary starts from it, exactly
            life = {}
    if life is not None:
        inst["life"] = life
    if life:  # a summary to continue: the endpoint folds in the readings after its last and reads the
        # last W for the windows; older tail readings would only be parsed and skipped
        readings, t = inst["readings"], info.time_column
        after = len(readings)
        while after and readings[after - 1][t] > life["last"]:
            after -= 1
        need = max(info.window, len(readings) - after)
        if len(readings) > need:
            inst["readings"] = readings[-need:]
    if horizon is not None:
        inst["horizon"] = horizon
    return inst, life is not None


def _after(seg: _Segment, pred: dict[str, Any], model_version: str, info: model_api.ModelInfo,
           dropped: dict[str, str] | None = None) -> AssetState:
    """The state after a segment was answered with ``pred``. While the serving model's summary lags
    (another model answered), the tail keeps every reading after it, up to ``HOLD`` readings; a
    summary dropped for lagging more is reported in ``dropped``."""
    base, t, w = seg.base, info.time_column, info.window
    new = [seg.new[k] for k in sorted(seg.new)]
    combined = list(base.tail) + new
    keep = max(w - 1, 0)
    life = pred.get("life")
    lagging = usable_summary(base, info.fingerprint)
    if lagging is not None and not (isinstance(life, dict) and life.get("model") == info.fingerprint):
        behind = len(combined)
        while behind and combined[behind - 1][t] > lagging["last"]:
            behind -= 1
        behind = len(combined) - behind  # readings after the summary's last
        if behind <= max(HOLD, keep):
            keep = max(keep, behind)
        elif dropped is not None:
            dropped[base.asset_id] = (f"asset {base.asset_id!r}: its summary for model {info.fingerprint} fell "
                                      f"{behind} readings behind (answered by {model_version or 'another model'}); "
                                      "answered from its window until a rebuild")
    tail = tuple(combined[max(0, len(combined) - keep):]) if keep else ()
    evicted = combined[len(combined) - keep - 1][t] if len(combined) > keep else base.evicted
    summaries = {fp: s for fp, s in base.summaries.items()
                 if type(s.get("last")) in (int, float) and (evicted is None or s["last"] >= evicted)}
    if isinstance(life, dict) and isinstance(life.get("model"), str):
        summaries[life["model"]] = life
    if not pred:  # no model yet (``process_batch`` without a scorer): the readings are kept, no answer
        answer = base.answer
    else:
        answer = {k: v for k, v in pred.items() if k not in ("life", "asset_id")}
        answer.update(model_version=model_version, with_summary=life is not None, readings=base.taken + len(new),
                      last=new[-1][t])
        if life is None and info.reads_life and "warning" not in answer:
            answer["warning"] = info.warning
    return evolve(base, last=new[-1][t], taken=base.taken + len(new), evicted=evicted, tail=tail,
                   summaries=summaries, answer=answer)


def pack(instances: list[dict[str, Any]], max_instances: int, max_bytes: int) -> list[list[int]]:
    """Indices of ``instances`` grouped into requests within the endpoint's limits (in order)."""
    return pack_sizes([len(jsonio.dumps(inst)) for inst in instances], max_instances, max_bytes)


def pack_sizes(sizes: list[int], max_instances: int, max_bytes: int) -> list[list[int]]:
    """``pack`` of instances whose compact JSON is ``sizes[i]`` bytes long."""
    groups: list[list[int]] = []
    size = 0
    budget = max_bytes - BODY_MARGIN
    for i, n in enumerate(sizes):
        n += 1  # the comma
        if not groups or len(groups[-1]) >= max_instances or size + n > budget:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += n
    return groups


def score_all(instances: list[dict[str, Any]], scorer: Scorer, max_instances: int, max_bytes: int
              ) -> tuple[list[tuple[dict[str, Any], str] | str | None], int]:
    """Each instance's (prediction, model_version), or the refusal's message (str), or None when the
    endpoint failed (to retry); and the number of endpoint calls."""
    out: list[tuple[dict[str, Any], str] | str | None] = [None] * len(instances)
    parts = [jsonio.dumps(inst) for inst in instances]  # once: sizes for pack, then the bodies
    score_body = getattr(scorer, "score_body", None)
    calls = 0
    # a work list, not a recursive closure: a closure that calls itself is a reference cycle, which
    # would keep the batch's instances alive until the garbage collector's next full pass
    todo = pack_sizes([len(p) for p in parts], max_instances, max_bytes)[::-1]
    while todo:
        idx = todo.pop()
        calls += 1
        try:
            if score_body is not None:  # the instances' JSON is already made: send it as it is
                doc = score_body(model_api.body_of([parts[i] for i in idx]))
            else:
                doc = scorer([instances[i] for i in idx])
        except model_api.ScoreError as exc:
            if exc.status >= 500:
                continue
            if len(idx) == 1:
                out[idx[0]] = exc.message
            else:  # one refused instance must not fail the others: each alone, in order
                todo += [[i] for i in reversed(idx)]
            continue
        except (OSError, TimeoutError):
            continue
        for i, p in zip(idx, doc["predictions"], strict=True):
            out[i] = (p, str(doc.get("model_version", "")))
    return out, calls


def _ended_by(archive: list[dict[str, Any]], seg: _Segment) -> str:
    """The event that started ``seg``'s life (the archived event item of that life's end)."""
    for item in archive:
        if item["type"] == "event" and item["life"] == seg.base.life_no - 1:
            return str(item["event"])
    return "maintenance"


def process_batch(records: list[Record], states: dict[str, AssetState | StateError], scorer: Scorer | None,
                  info: model_api.ModelInfo, *, day: str, horizon: float | None = None,
                  max_instances: int | None = None, rule: decisions.Rule | None = None) -> BatchResult:
    """Take a batch of valid records (``parse_batch``) into the assets' states.

    ``states``: asset -> its stored state (absent: never seen; a StateError: unreadable, its records
    fail). ``day`` (YYYY-MM-DD) partitions the archive; ``horizon`` adds ``failure_probability``;
    ``max_instances`` (default ``info.max_instances``) caps the instances per request; ``rule`` (the
    decision rule) evaluates each new answer into ``BatchResult.events``. ``scorer`` None: no model
    yet (``bootstrap_info``): readings are taken in (state, archive) and nothing is answered.
    The endpoint is called once per batch (more only to respect its limits or to isolate a refusal).
    """
    result = BatchResult()
    by_asset: dict[str, list[Record]] = {}
    for r in records:
        by_asset.setdefault(r.asset_id, []).append(r)
    plans: list[tuple[str, list[_Segment], AssetState, list[dict[str, Any]]]] = []
    instances: list[dict[str, Any]] = []
    owner: list[tuple[int, int]] = []  # instance -> (plan, segment)
    for asset, recs in by_asset.items():
        st = states.get(asset) or AssetState(asset)
        if isinstance(st, StateError):
            result.errors += [RecordError(r.where, str(st), asset) for r in recs]
            continue
        archive: list[dict[str, Any]] = []
        segs, final, taken = _segments(st, recs, info.time_column, archive, day)
        if not taken:
            continue
        plans.append((asset, segs, final, archive))
        for k, seg in enumerate(segs):
            if not seg.new:
                continue
            inst, _ = _instance(seg, info, horizon)
            instances.append(inst)
            owner.append((len(plans) - 1, k))
    if scorer is None:  # no model yet: every segment is taken in without an answer
        answers: list[Any] = [({}, "")] * len(instances)
    else:
        answers, result.calls = score_all(instances, scorer, max_instances or info.max_instances,
                                          info.max_body_bytes)
    got: dict[tuple[int, int], Any] = {o: a for o, a in zip(owner, answers, strict=True)}
    for p, (asset, segs, final, archive) in enumerate(plans):
        outs = [got[(p, k)] for k in range(len(segs)) if segs[k].new]
        if any(o is None for o in outs):
            result.retry[asset] = "the endpoint did not answer; retry"
            continue
        refused = [o for o in outs if isinstance(o, str)]
        if refused:
            result.errors += [RecordError(r.where, f"refused by the endpoint: {refused[0]}", asset)
                              for r in by_asset[asset]]
            continue
        state = final
        events: list[dict[str, Any]] = []
        episode = (segs[0].base.at_risk, segs[0].base.risk_since)  # the stored episode
        answered = iter(outs)
        for k, seg in enumerate(segs):
            if k > 0:  # an event ended the previous life: an open episode closes with it
                ev = decisions.end_of_life(asset, seg.base.life_no - 1, *episode, _ended_by(archive, seg),
                                           seg.base.ended) if rule is not None else None
                if ev is not None:
                    events.append(ev)
                episode = (False, None)
            if not seg.new:
                continue
            pred, version = next(answered)
            after = _after(seg, pred, version, info, result.dropped)
            life = seg.base.life_no
            if rule is not None and pred:
                at, since, ev = decisions.step(asset, life, *episode, after.answer, after.last, rule)
                episode = (at, since)
                if ev is not None:
                    events.append(ev)
            for time in sorted(seg.new):
                archive.append({"type": "reading", "asset_id": asset, "life": life, "time": time,
                                "seq": seg.seqs[time], "reading": seg.new[time], "day": day})
            if pred:
                archive.append({"type": "answer", "asset_id": asset, "life": life, "time": after.last,
                                "answer": after.answer, "day": day})
            if k == len(segs) - 1 and seg.base.life_no == final.life_no:
                state = evolve(after, seq=final.seq, ended=final.ended)
        if rule is not None:
            state = evolve(state, at_risk=episode[0], risk_since=episode[1])
        result.states[asset] = evolve(state, version=state.version + 1)
        result.archive += archive
        result.events += events
    return result
