"""One asset's state and its compact JSON document (the DynamoDB item's ``doc``, a SQLite row locally).

The state holds, for the asset's current life: the life summaries it has, one per model
fingerprint (each as the endpoint returned it); the last W-1 readings taken in (``tail``), so a
record shorter than the window still gets a full window; the time of the last reading taken in
(``last``) and of the newest reading that fell off the tail (``evicted``: a summary whose ``last``
is older missed readings the tail no longer holds, so it cannot be caught up); the latest answer;
the position of the last record taken in (``seq``); the open risk episode (``at_risk`` since the
reading time ``risk_since``: training_src/stream/decisions.py); ``version``, incremented at each write (the
conditional write's check).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from . import jsonio


class StateError(ValueError):
    """A stored state that cannot be read; ``str()`` names the asset and what is wrong."""

    def __init__(self, message: str, asset_id: str | None = None):
        super().__init__(message)
        self.asset_id = asset_id


@dataclass(frozen=True)
class AssetState:
    """An asset's state; ``version`` 0 is an asset never seen (no stored row)."""

    asset_id: str
    version: int = 0
    life_no: int = 0  # lives ended so far (maintenance/failure events): the archive tags readings with it
    seq: int | None = None
    last: float | None = None
    taken: int = 0  # readings taken in during the current life
    evicted: float | None = None
    tail: tuple[dict[str, Any], ...] = ()
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    answer: dict[str, Any] | None = None
    ended: float | None = None  # time of the last event that ended a life
    at_risk: bool = False  # the decision rule's open episode (decisions.py), so replays emit nothing
    risk_since: float | None = None

    def new_life(self, time: float) -> AssetState:
        """The state after an event ended the life at ``time``: nothing of the old life is kept."""
        return replace(self, life_no=self.life_no + 1, last=None, taken=0, evicted=None, tail=(),
                       summaries={}, answer=None, ended=time, at_risk=False, risk_since=None)


def evolve(st: AssetState, **changes: Any) -> AssetState:
    """``dataclasses.replace(st, **changes)`` without its per-call field inspection (the stream's hot
    path makes several per asset per batch); ``changes`` must name fields of ``AssetState``."""
    new = object.__new__(AssetState)
    d = new.__dict__
    d.update(st.__dict__)
    d.update(changes)
    return new


def _columns(tail: tuple[dict[str, Any], ...]) -> list[str]:
    cols: dict[str, None] = {}
    for r in tail:
        cols.update(dict.fromkeys(r))
    return list(cols)


def encode(state: AssetState) -> str:
    """The state's compact JSON (the tail as one column list and rows of values)."""
    tail = state.tail
    first = list(tail[0]) if tail else []
    if tail and all(list(r) == first for r in tail):  # the usual case: every reading has the same fields
        cols = first
        rows = [list(r.values()) for r in tail]
    else:
        cols = _columns(tail)
        rows = [[r.get(c) for c in cols] for r in tail]
    doc = {"life_no": state.life_no, "seq": None if state.seq is None else str(state.seq), "last": state.last,
           "taken": state.taken, "evicted": state.evicted, "ended": state.ended,
           "cols": cols, "tail": rows,
           "summaries": state.summaries, "answer": state.answer}
    if state.at_risk:  # absent when calm: states written before episodes existed read the same
        doc.update(at_risk=True, risk_since=state.risk_since)
    return jsonio.dumps(doc).decode()


def _num(v: Any) -> bool:
    return type(v) in (int, float)


def decode(asset_id: str, version: int, text: str | bytes) -> AssetState:
    """The state stored as ``text`` (``encode``'s form) at ``version``; StateError naming the asset and key."""
    where = f"state of asset {asset_id!r}"
    try:
        doc = jsonio.loads(text)
    except (ValueError, TypeError) as exc:
        raise StateError(f"{where}: not JSON ({str(exc).splitlines()[0][:80]})", asset_id) from None
    if not isinstance(doc, dict):
        raise StateError(f"{where}: must be a JSON object", asset_id)
    try:
        for k in ("last", "evicted", "ended"):
            if doc.get(k) is not None and not _num(doc[k]):
                raise StateError(f"{where}: {k}: must be a number or null", asset_id)
        for k in ("life_no", "taken"):
            if type(doc.get(k)) is not int or doc[k] < 0:
                raise StateError(f"{where}: {k}: must be a whole number >= 0", asset_id)
        cols, rows = doc.get("cols"), doc.get("tail")
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise StateError(f"{where}: cols: must be a list of field names", asset_id)
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(cols) for r in rows):
            raise StateError(f"{where}: tail: must be a list of rows of {len(cols)} values", asset_id)
        tail = tuple(dict(zip(cols, r, strict=False)) if None not in r
                     else {c: v for c, v in zip(cols, r, strict=False) if v is not None}
                     for r in rows)  # lengths checked above
        summaries = doc.get("summaries")
        if not isinstance(summaries, dict) or not all(isinstance(v, dict) for v in summaries.values()):
            raise StateError(f"{where}: summaries: must be an object of life summaries", asset_id)
        answer = doc.get("answer")
        if answer is not None and not isinstance(answer, dict):
            raise StateError(f"{where}: answer: must be an object or null", asset_id)
        if type(doc.get("at_risk", False)) is not bool:
            raise StateError(f"{where}: at_risk: must be true or false", asset_id)
        if doc.get("risk_since") is not None and not _num(doc["risk_since"]):
            raise StateError(f"{where}: risk_since: must be a number or null", asset_id)
        seq = doc.get("seq")
        seq = None if seq is None else int(seq)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, StateError):
            raise
        raise StateError(f"{where}: seq: must be a decimal string or null", asset_id) from None
    if type(version) is not int or version < 1:
        raise StateError(f"{where}: version: must be a whole number >= 1", asset_id)
    return AssetState(asset_id=asset_id, version=version, life_no=doc["life_no"], seq=seq, last=doc.get("last"),
                      taken=doc["taken"], evicted=doc.get("evicted"), tail=tail, summaries=summaries,
                      answer=answer, ended=doc.get("ended"), at_risk=doc.get("at_risk", False),
                      risk_since=doc.get("risk_since"))


# ------------------------------------------------------------------------------------------ DynamoDB
def to_item(st: AssetState) -> dict[str, Any]:
    """The DynamoDB item of a state (``asset_id`` S key, ``version`` N, ``doc`` S)."""
    return {"asset_id": {"S": st.asset_id}, "version": {"N": str(st.version)}, "doc": {"S": encode(st)}}


def from_item(item: dict[str, Any]) -> AssetState:
    """The state in a DynamoDB item; StateError naming the asset when it cannot be read."""
    asset = item.get("asset_id", {}).get("S", "?")
    try:
        version = int(item["version"]["N"])
        doc = item["doc"]["S"]
    except (KeyError, TypeError, ValueError):
        raise StateError(f"state of asset {asset!r}: version (N) and doc (S) must be set", asset) from None
    return decode(asset, version, doc)


def conditional_put(table: str, st: AssetState) -> dict[str, Any]:
    """``PutItem`` parameters writing ``st`` only if the stored version is still the one it was read at
    (``version - 1``; no item for a first write): no lost update when writers race."""
    request: dict[str, Any] = {"TableName": table, "Item": to_item(st)}
    if st.version == 1:
        request["ConditionExpression"] = "attribute_not_exists(asset_id)"
    else:
        request["ConditionExpression"] = "version = :read"
        request["ExpressionAttributeValues"] = {":read": {"N": str(st.version - 1)}}
    return request
