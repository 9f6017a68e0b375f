"""Every asset's life summary for a newly promoted model, from the archive (the same code locally and
in the rebuild processing job).

For each asset that has readings in its current life and no summary the serving model can use, its
archived readings of that life (up to the state's ``last``: the cut) are sent to the new model as a
whole history with ``"life": {}`` (in pieces of at most the endpoint's readings per instance, each
continuing the summary of the one before); the summary and the answer returned are stored with a
conditional write (``version``). Readings that arrive after the cut are folded in by the stream from
the stored tail (``core.usable_summary``): a summary whose ``last`` is within the tail is caught up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from . import archive, core, model_api
from .state import AssetState


@dataclass
class RebuildResult:
    """``states``: the rebuilt assets' new states (``version`` incremented); ``errors``: asset -> why not."""

    states: dict[str, AssetState] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: int = 0


def needs_rebuild(st: AssetState, info: model_api.ModelInfo) -> bool:
    """Whether ``st`` has readings in its life and no summary for the model ``info`` describes."""
    return info.reads_life and st.taken > 0 and core.usable_summary(st, info.fingerprint) is None


def rebuild(states: Iterable[AssetState], lines_of: Callable[[str], Iterable[str]], scorer: core.Scorer,
            info: model_api.ModelInfo, *, horizon: float | None = None,
            max_instances: int | None = None, per_instance: int | None = None, workers: int = 1) -> RebuildResult:
    """Summaries for the model behind ``scorer`` (described by ``info``) of every asset in ``states``
    that needs one; ``lines_of(asset_id)`` gives the asset's archived JSON lines, read by ``workers``
    threads at once (the AWS job's reads are S3 requests: waiting, not computing). All the assets'
    histories go to the endpoint together, as many per request as its limits take."""
    result = RebuildResult()
    todo: dict[str, tuple[AssetState, list[dict[str, Any]]]] = {}
    need = []
    for st in states:
        if needs_rebuild(st, info):
            need.append(st)
        else:
            result.skipped += 1

    def history_of(st: AssetState) -> list[dict[str, Any]]:
        return archive.life_history(lines_of(st.asset_id), st.life_no, info.time_column, st.last)

    if workers > 1 and len(need) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            histories = list(pool.map(history_of, need))
    else:
        histories = [history_of(st) for st in need]
    for st, history in zip(need, histories, strict=True):
        if len(history) != st.taken:
            result.errors[st.asset_id] = (f"asset {st.asset_id!r}: the archive holds {len(history)} readings of its "
                                          f"life, the state counts {st.taken}")
            continue
        todo[st.asset_id] = (st, history)
    lives: dict[str, dict[str, Any]] = {a: {} for a in todo}
    start = dict.fromkeys(todo, 0)
    answers: dict[str, tuple[dict[str, Any], str]] = {}
    back = max(info.window - 1, 0)
    per_instance = per_instance or info.max_readings
    step = max(per_instance - back, 1)
    while start:
        ids = list(start)
        instances = []
        for a in ids:
            hist = todo[a][1]
            lo = start[a]
            inst = {"asset_id": a, "readings": hist[max(0, lo - back) if lo else 0:lo + step], "life": lives[a]}
            if horizon is not None:
                inst["horizon"] = horizon
            instances.append(inst)
        got, _ = core.score_all(instances, scorer, max_instances or info.max_instances, info.max_body_bytes)
        for a, out in zip(ids, got, strict=True):
            if not isinstance(out, tuple) or "life" not in out[0]:
                result.errors[a] = f"asset {a!r}: the model did not return a summary ({out or 'no answer'})"
                del start[a]
                continue
            lives[a] = out[0]["life"]
            start[a] += step
            if start[a] >= len(todo[a][1]):
                answers[a] = out
                del start[a]
    for a, (pred, version) in answers.items():
        st = todo[a][0]
        answer = {k: v for k, v in pred.items() if k not in ("life", "asset_id")}
        answer.update(model_version=version, with_summary=True, readings=st.taken, last=st.last)
        result.states[a] = replace(st, version=st.version + 1, summaries={**st.summaries, lives[a]["model"]: lives[a]},
                                   answer=answer)
    return result


def merge(current: AssetState, rebuilt: AssetState, fingerprint: str) -> AssetState | None:
    """The rebuilt summary laid onto the asset's current state (read again after the stream moved on),
    or None when it no longer applies: another life began, the stream already has a summary for the
    model, or readings it misses have left the tail (then the next rebuild makes it again)."""
    summary = rebuilt.summaries.get(fingerprint)
    if summary is None or current.life_no != rebuilt.life_no or core.usable_summary(current, fingerprint):
        return None
    merged = replace(current, version=current.version + 1, summaries={**current.summaries, fingerprint: summary})
    if core.usable_summary(merged, fingerprint) is None:
        return None
    if current.last == rebuilt.last:  # nothing came in since the cut: its answer is the latest
        merged = replace(merged, answer=rebuilt.answer)
    return merged
