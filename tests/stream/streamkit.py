"""Helpers of the streaming tests: whole-history answers, fleets as chunked streams."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from training_src.stream import core, model_api

HORIZON = 30


def whole_history_answers(scorer: model_api.InProcessScorer, units: dict[Any, list[dict]]) -> dict[str, dict]:
    """Each engine's answer to its whole history sent with ``"life": {}`` (requests within the limits)."""
    instances = [{"asset_id": str(u), "readings": units[u], "life": {}, "horizon": HORIZON} for u in units]
    out = {}
    for group in core.pack(instances, 100, scorer.info.max_body_bytes):
        for p in scorer([instances[i] for i in group])["predictions"]:
            out[p["asset_id"]] = {k: v for k, v in p.items() if k not in ("life", "asset_id")}
    return out


def chunked_records(units: dict[Any, list[dict]], seed: int, lo: int = 1, hi: int = 50) -> Iterator[dict]:
    """The engines as a stream: records of 1-50 readings, assets interleaved at random, each asset's
    records in order (what a partition key guarantees)."""
    rng = random.Random(seed)
    queues = {}
    for u, readings in units.items():
        chunks, i = [], 0
        while i < len(readings):
            n = rng.randint(lo, hi)
            chunks.append({"asset_id": str(u), "readings": readings[i:i + n]})
            i += n
        queues[u] = chunks
    live = [u for u in queues if queues[u]]
    while live:
        u = rng.choice(live)
        yield queues[u].pop(0)
        if not queues[u]:
            live.remove(u)
