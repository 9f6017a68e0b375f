"""Two models serving at once (the blue/green canary): the stream's state stays right.

During a canary the endpoint routes each request to one of two variants; the answer's
``model_version`` says which model answered, and a summary it returns carries that model's
fingerprint (``life.model``). The score Lambda still holds the champion's model info. These tests
send a fleet through a stand-in endpoint that routes each request to the champion or the
challenger (two real FD001 models with different fingerprints) and check that no summary is ever
stored under the other model's key, none is made from part of a life, and the champion's answers
after the canary are its whole-history answers wherever the tail could keep its summary up to date.
"""

from __future__ import annotations

import random

import pytest
from streamkit import HORIZON, chunked_records, whole_history_answers

from training_src.stream import core, model_api, state

DAY = "2026-12-06"


class Canary:
    """An endpoint with two variants: each request goes to the challenger with probability ``share``."""

    def __init__(self, champion: model_api.InProcessScorer, challenger: model_api.InProcessScorer,
                 share: float, seed: int) -> None:
        self.champion, self.challenger, self.share = champion, challenger, share
        self.rng = random.Random(seed)
        self.calls: list[str] = []  # model_version of each request's answer

    def __call__(self, instances):
        model = self.challenger if self.rng.random() < self.share else self.champion
        doc = model(instances)
        self.calls.append(doc["model_version"])
        return doc


def feed(records, states, scorer, info, *, start, batch=30, max_instances=4):
    """Batches of ``records`` through ``core`` as the Lambda runs them (stored form read back);
    returns the model versions answering each batch."""
    items = [(f"record {i}", i, r) for i, r in enumerate(records, start)]
    versions = []
    for b in range(0, len(items), batch):
        recs, errors = core.parse_batch(items[b:b + batch], info)
        res = core.process_batch(recs, states, scorer, info, day=DAY, horizon=HORIZON, max_instances=max_instances)
        assert not errors and not res.errors and not res.retry
        for a, st in res.states.items():
            states[a] = state.decode(a, st.version, state.encode(st))
        versions.append({i["answer"]["model_version"] for i in res.archive if i["type"] == "answer"})
    return versions


@pytest.fixture(scope="module")
def challenger(second_model):
    return model_api.InProcessScorer(model_api.load_model(second_model))


def _summary_of(model, readings, last):
    """The summary ``model`` makes of the life's readings up to ``last`` sent whole with ``"life": {}``."""
    upto = [r for r in readings if r["cycle"] <= last]
    return model([{"asset_id": "x", "readings": upto, "life": {}}])["predictions"][0]["life"]


@pytest.mark.slow
def test_a_canary_never_stores_one_models_summary_under_the_others_key(scorer, challenger, fd001_units):
    assert scorer.info.fingerprint != challenger.info.fingerprint
    assert scorer.model.version != challenger.model.version
    units = {u: fd001_units[u] for u in list(fd001_units)[:30]}
    # every engine's history but its last reading, which comes after the canary
    records = list(chunked_records({u: r[:-1] for u, r in units.items()}, seed=11, lo=1, hi=6))
    cut = len(records) // 2
    states: dict[str, state.AssetState] = {}
    # the first half before the canary, the second half with 30% of the requests on the challenger;
    # the Lambda holds the champion's model info throughout
    feed(records[:cut], states, scorer, scorer.info, start=0)
    canary = Canary(scorer, challenger, share=0.3, seed=4)
    versions = feed(records[cut:], states, canary, scorer.info, start=cut)
    assert any(len(v) == 2 for v in versions), "no batch was answered by both models"
    assert challenger.model.version in canary.calls and scorer.model.version in canary.calls

    models = {scorer.info.fingerprint: scorer, challenger.info.fingerprint: challenger}
    for u, readings in units.items():
        st = states[str(u)]
        assert set(st.summaries) <= set(models), (u, set(st.summaries))
        for fp, s in st.summaries.items():
            # stored under its own model's key, and exactly that model's summary of the life so far
            assert s["model"] == fp
            assert s == _summary_of(models[fp], readings, s["last"]), (u, fp)

    # the canary ends: the champion answers each engine's last reading. Where the tail could keep the
    # champion's summary up to date (or still holds the whole life), the answer is its whole-history
    # answer; elsewhere it is the window's, with the contract's warning (never a wrong summary)
    fp = scorer.info.fingerprint
    continued = {u for u in units if core.usable_summary(states[str(u)], fp) is not None
                 or states[str(u)].evicted is None}
    feed([{"asset_id": str(u), "readings": r[-1:]} for u, r in units.items()], states, scorer, scorer.info,
         start=len(records))
    wanted = whole_history_answers(scorer, units)
    for u in units:
        got = states[str(u)].answer
        if u in continued:
            assert got["with_summary"] is True and {k: v for k, v in got.items() if k in wanted[str(u)]} == \
                wanted[str(u)], u
        else:
            assert got["with_summary"] is False and got["warning"] == scorer.info.warning, u
    assert len(continued) > len(units) // 2


@pytest.mark.slow
def test_the_champions_summary_survives_a_request_the_challenger_answered(scorer, challenger, fd001_units):
    """An asset whose summary is the champion's: a batch answered by the challenger (the summary
    ignored, the answer from the window with the warning) leaves it as it was, and the next batch
    the champion answers continues it: the answer equals the champion's whole-history answer."""
    readings = fd001_units[7]
    states: dict[str, state.AssetState] = {}
    info = scorer.info
    feed([{"asset_id": "a", "readings": readings[:80]}], states, scorer, info, start=0)
    before = states["a"].summaries[info.fingerprint]
    feed([{"asset_id": "a", "readings": readings[80:90]}], states, challenger, info, start=1)
    st = states["a"]
    assert st.answer["with_summary"] is False and st.answer["warning"] == info.warning
    assert st.answer["model_version"] == challenger.model.version
    assert st.summaries == {info.fingerprint: before}  # untouched, and nothing stored for the challenger
    feed([{"asset_id": "a", "readings": readings[90:]}], states, scorer, info, start=2)
    want = whole_history_answers(scorer, {"a": readings})["a"]
    assert {k: v for k, v in states["a"].answer.items() if k in want} == want
    assert states["a"].answer["with_summary"] is True


@pytest.mark.slow
def test_a_young_asset_first_answered_by_the_challenger_gets_the_champions_summary(scorer, challenger,
                                                                                  fd001_units):
    """An asset whose life starts during the canary and whose first request the challenger answers:
    while its tail holds its whole life the champion's summary starts from the tail, so the champion's
    next answer is its whole-history answer, not a window-only one."""
    readings = fd001_units[9]
    info = scorer.info
    states: dict[str, state.AssetState] = {}
    feed([{"asset_id": "y", "readings": readings[:10]}], states, challenger, info, start=0)
    assert set(states["y"].summaries) == {challenger.info.fingerprint}
    feed([{"asset_id": "y", "readings": readings[10:20]}], states, scorer, info, start=1)
    want = whole_history_answers(scorer, {"y": readings[:20]})["y"]
    got = states["y"].answer
    assert got["with_summary"] is True and {k: v for k, v in got.items() if k in want} == want
    assert set(states["y"].summaries) == {challenger.info.fingerprint, info.fingerprint}


def _through(records, states, scorer, info, start):
    """One batch through ``core`` (stored form read back); returns the batch's result."""
    items = [(f"record {i}", i, r) for i, r in enumerate(records, start)]
    recs, errors = core.parse_batch(items, info)
    res = core.process_batch(recs, states, scorer, info, day=DAY, horizon=HORIZON)
    assert not errors and not res.errors and not res.retry
    for a, st in res.states.items():
        states[a] = state.decode(a, st.version, state.encode(st))
    return res


def _rolled_back(scorer, challenger, fd001_units, lag):
    """Engines streamed by the champion, then ``lag`` readings each answered only by the challenger (a
    canary that went on, then was rolled back), then the champion answers the rest again."""
    units = dict([(u, r) for u, r in fd001_units.items() if len(r) > 70 + lag][:8])
    assert len(units) == 8
    states: dict[str, state.AssetState] = {}
    _through([{"asset_id": str(u), "readings": r[:60]} for u, r in units.items()], states, scorer, scorer.info, 0)
    res = _through([{"asset_id": str(u), "readings": r[60:60 + lag]} for u, r in units.items()], states,
                   challenger, scorer.info, 100)
    after = _through([{"asset_id": str(u), "readings": r[60 + lag:]} for u, r in units.items()], states, scorer,
                     scorer.info, 200)
    return units, states, res, after


@pytest.mark.slow
def test_after_a_rollback_the_champions_summaries_continue_where_the_challenger_answered_more_than_the_tail(
        scorer, challenger, fd001_units):
    # the challenger answers 45 readings of every engine: more than the W-1 a tail holds
    lag = 45
    assert lag > scorer.info.window - 1
    units, states, res, _ = _rolled_back(scorer, challenger, fd001_units, lag)
    wanted = whole_history_answers(scorer, units)
    for u in units:
        got = states[str(u)].answer
        assert got["with_summary"] is True, u
        assert {k: v for k, v in got.items() if k in wanted[str(u)]} == wanted[str(u)], u
        assert len(states[str(u)].tail) == scorer.info.window - 1  # caught up: the tail is W-1 again
    assert not res.dropped


@pytest.mark.slow
def test_a_summary_that_lags_past_the_hold_is_reported_not_silently_dropped(scorer, challenger, fd001_units,
                                                                             monkeypatch):
    monkeypatch.setattr(core, "HOLD", 35)
    units, states, res, _ = _rolled_back(scorer, challenger, fd001_units, 40)
    assert sorted(res.dropped) == sorted(str(u) for u in units)
    assert all("fell 40 readings behind" in m for m in res.dropped.values())
    for u in units:  # answered from the window, with the contract's warning, never a stale summary
        got = states[str(u)].answer
        assert got["with_summary"] is False and got["warning"] == scorer.info.warning, u
