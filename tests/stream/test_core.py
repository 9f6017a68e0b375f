"""The stream core (training_src/stream/core.py) with the real serving code in-process: whole-history
answers from chunked records, duplicates, replays, resets, model changes, bad records, request limits."""

from __future__ import annotations

import json
import random

import pytest
from streamkit import HORIZON, chunked_records, whole_history_answers

from training_src.predmaint_serving import codec
from training_src.stream import core, model_api, state
from training_src.stream.records import RecordError, parse_record

DAY = "2026-12-06"


def run(records, states, scorer, batch=40, shuffle=None, start=0, **kw):
    """Feed ``records`` (dicts) in batches, positions from ``start`` as seq; returns the states and all results."""
    info = scorer.info
    results = []
    items = [(f"record {i}", i, r) for i, r in enumerate(records, start)]
    for b in range(0, len(items), batch):
        chunk = items[b:b + batch]
        if shuffle is not None:
            chunk = chunk[:]
            shuffle.shuffle(chunk)
        recs, errors = core.parse_batch(chunk, info)
        res = core.process_batch(recs, states, scorer, info, day=DAY, horizon=HORIZON, **kw)
        res.errors = errors + res.errors
        for a, st in res.states.items():
            # what a store does: encode, then read back (the stored form is the truth)
            states[a] = state.decode(a, st.version, state.encode(st))
        results.append(res)
    return states, results


@pytest.fixture(scope="module")
def units40(fd001_units):
    return {u: fd001_units[u] for u in list(fd001_units)[:40]}


@pytest.fixture(scope="module")
def expected40(scorer, units40):
    return whole_history_answers(scorer, units40)


def test_chunked_stream_gives_the_whole_history_answer_bit_for_bit(scorer, units40, expected40):
    records = list(chunked_records(units40, seed=1))
    states, results = run(records, {}, scorer)
    assert not any(r.errors or r.retry for r in results)
    assert all(r.calls == 1 for r in results)  # one endpoint call per batch
    for u, want in expected40.items():
        got = dict(states[u].answer)
        assert got.pop("with_summary") is True and got.pop("readings") == len(units40[int(u)])
        assert got.pop("last") == units40[int(u)][-1]["cycle"]
        got.pop("model_version")
        assert got == want, u
        assert set(states[u].summaries) == {scorer.info.fingerprint}
        assert len(states[u].tail) == min(scorer.info.window - 1, len(units40[int(u)]))


def test_duplicates_replays_and_reordering_within_a_batch_change_nothing(scorer, units40, expected40):
    records = list(chunked_records(units40, seed=2))
    rng = random.Random(3)
    noisy = []
    for r in records:
        noisy.append(r)
        if rng.random() < 0.2:  # a device resending its record
            noisy.append(json.loads(json.dumps(r)))
    states, _ = run(noisy, {}, scorer, batch=25, shuffle=rng)
    # the same batches delivered again (a retried batch): nothing changes, nothing is written
    before = {a: state.encode(s) for a, s in states.items()}
    items = [(f"record {i}", i, r) for i, r in enumerate(noisy)]
    recs, _ = core.parse_batch(items[-60:], scorer.info)
    again = core.process_batch(recs, states, scorer, scorer.info, day=DAY, horizon=HORIZON)
    assert again.states == {} and again.archive == [] and again.calls == 0
    for u, want in expected40.items():
        got = {k: v for k, v in states[u].answer.items() if k in want}
        assert got == want, u
    assert {a: state.encode(s) for a, s in states.items()} == before


def test_maintenance_starts_a_new_life(scorer, fd001_units):
    a, b = fd001_units[3], fd001_units[31]
    want = whole_history_answers(scorer, {"x": b})["x"]
    records = [{"asset_id": "x", "readings": a[:40]}, {"asset_id": "x", "readings": a[40:]},
               {"asset_id": "x", "event": "maintenance", "time": a[-1]["cycle"]},
               {"asset_id": "x", "readings": b[:7]}, {"asset_id": "x", "readings": b[7:]}]
    for batch in (1, 2, 5):
        states, results = run(records, {}, scorer, batch=batch)
        st = states["x"]
        assert st.life_no == 1 and st.taken == len(b)
        assert {k: v for k, v in st.answer.items() if k in want} == want
        events = [i for r in results for i in r.archive if i["type"] == "event"]
        assert [e["event"] for e in events] == ["maintenance"]
    # the same event replayed (a new position, same time) does not end the new life
    recs, _ = core.parse_batch([("record 9", 9, records[2])], scorer.info)
    res = core.process_batch(recs, states, scorer, scorer.info, day=DAY)
    assert res.states == {}


def test_a_model_change_answers_from_the_window_with_the_contracts_warning(scorer, fd001_units):
    readings = fd001_units[3]
    states, _ = run([{"asset_id": "x", "readings": readings[:60]}], {}, scorer)
    old = states["x"]
    fp = scorer.info.fingerprint
    other = {**old.summaries[fp], "model": "0" * 16}
    states["x"] = state.AssetState(**{**old.__dict__, "summaries": {"0" * 16: other}})
    states, _ = run([{"asset_id": "x", "readings": readings[60:]}], states, scorer, start=1)
    ans = states["x"].answer
    bare = scorer([{"asset_id": "x", "readings": readings[-30:], "horizon": HORIZON}])["predictions"][0]
    assert ans["with_summary"] is False and ans["warning"] == scorer.info.warning == codec.LIFE_OTHER_MODEL
    assert ans["rul"] == bare["rul"]
    assert fp not in states["x"].summaries  # never a summary made from part of the life


def test_bad_records_and_states_fail_alone(scorer, fd001_units):
    good = {"asset_id": "ok", "readings": fd001_units[5][:40]}
    bad_reading = {"asset_id": "bad", "readings": [{**fd001_units[6][0], "sensor_2": "x"}]}
    items = [("record 0", 0, good), ("record 1", 1, bad_reading), ("record 2", 2, b"{not json"),
             ("record 3", 3, {"asset_id": "e", "event": "overhaul", "time": 3}),
             ("record 4", 4, {"asset_id": "broken", "readings": fd001_units[7][:40]})]
    recs, errors = core.parse_batch(items, scorer.info)
    assert [str(e) for e in errors] == [
        "record 1: readings[0].sensor_2: must be a finite number",
        "record 2: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        "record 3: event: unknown event 'overhaul'; known: maintenance, failure"]
    try:
        state.decode("broken", 3, '{"life_no": 0, "taken": "many"}')
    except state.StateError as exc:
        unreadable = exc
    assert str(unreadable) == "state of asset 'broken': taken: must be a whole number >= 0"
    res = core.process_batch(recs, {"broken": unreadable}, scorer, scorer.info, day=DAY)
    assert list(res.states) == ["ok"] and res.states["ok"].version == 1
    assert [str(e) for e in res.errors] == ["record 4: " + str(unreadable)]


def test_a_refused_instance_fails_its_asset_only_and_limits_split_the_request(scorer, fd001_units):
    calls = []

    def picky(instances):
        calls.append(len(instances))
        if any(i["asset_id"] == "3" for i in instances):
            raise model_api.ScoreError(400, "instances[0].readings[0].sensor_9: must be a finite number")
        return scorer(instances)

    records = [{"asset_id": str(u), "readings": fd001_units[u][:35]} for u in range(1, 8)]
    recs, _ = core.parse_batch([(f"record {i}", i, r) for i, r in enumerate(records)], scorer.info)
    res = core.process_batch(recs, {}, picky, scorer.info, day=DAY, max_instances=3)
    assert calls == [3, 1, 1, 1, 3, 1] and sorted(res.states) == ["1", "2", "4", "5", "6", "7"]
    assert [str(e) for e in res.errors] == [
        "record 2: refused by the endpoint: instances[0].readings[0].sensor_9: must be a finite number"]

    def down(instances):
        raise model_api.ScoreError(503, "unavailable")

    res = core.process_batch(recs, {}, down, scorer.info, day=DAY)
    assert res.states == {} and sorted(res.retry) == [str(u) for u in range(1, 8)]


def test_pack_respects_the_body_limit():
    inst = [{"asset_id": str(i), "readings": [{"cycle": 1, "x": "y" * 1000}]} for i in range(50)]
    groups = core.pack(inst, 1000, core.BODY_MARGIN + 10_500)
    assert [len(g) for g in groups][:2] == [10, 10] and sum(map(len, groups)) == 50


def test_record_format_errors_name_the_field():
    def err(doc):
        with pytest.raises(RecordError) as e:
            parse_record(doc, "record 7", "cycle", ("cycle", "s"))
        return str(e.value)

    assert err({"readings": [{"cycle": 1, "s": 1}]}).startswith("record 7: asset_id: must be")
    assert err({"asset_id": "a", "readings": []}).startswith("record 7: readings: must be a non-empty list")
    assert err({"asset_id": "a", "readings": [{"cycle": 1, "s": 1}, {"cycle": 1, "s": 2}]}) == \
        "record 7: readings[1].cycle: time 1 sent twice in one record"
    assert err({"asset_id": "a", "event": "maintenance"}) == "record 7: time: must be a finite number"
    assert err({"asset_id": "a", "event": "maintenance", "time": 1, "x": 2}) == \
        "record 7: x: unknown key in an event record"


def test_readings_are_checked_as_one_record_and_the_first_bad_one_named():
    """The fast check runs over the whole record at once: a bad reading anywhere is still named, and
    values whose sum over the record overflows (each finite) are still taken."""
    def err(readings):
        with pytest.raises(RecordError) as e:
            parse_record({"asset_id": "a", "readings": readings}, "record 7", "cycle", ("cycle", "s"))
        return str(e.value)

    ok = {"cycle": 1, "s": 2.5}
    assert err([ok, 5]) == "record 7: readings[1]: must be an object"
    assert err([ok, {"cycle": 2}]) == "record 7: readings[1].s: must be a finite number"
    assert err([ok, {"cycle": 2, "s": True}]) == "record 7: readings[1].s: must be a finite number"
    assert err([ok, {"cycle": 2, "s": float("nan")}]) == "record 7: readings[1].s: must be a finite number"
    assert err([ok, {"cycle": 2, "s": -float("inf")}]) == "record 7: readings[1].s: must be a finite number"
    big = [{"cycle": 2, "s": 1e308}, {"cycle": 1, "s": 1e308, "note": "x"}]
    rec = parse_record({"asset_id": "a", "readings": big}, "record 7", "cycle", ("cycle", "s"))
    assert [r["cycle"] for r in rec.readings] == [1, 2]


def test_the_stream_package_imports_without_numpy_or_pandas(tmp_path):
    """The scoring Lambda ships the package flat (no features, no NumPy): importing it and reading a
    model info document must not need them."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    src = Path(core.__file__).parent
    shutil.copytree(src, tmp_path / "stream", ignore=shutil.ignore_patterns("__pycache__"))
    probe = (f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
             "for name in ('numpy', 'pandas', 'scipy', 'sklearn', 'xgboost', 'pyarrow'):\n    sys.modules[name] = None\n"
             "from stream import archive, core, model_api, records, rebuild, state\n"
             "info = model_api.ModelInfo.from_json(sys.argv[1])\nprint(info.window)\n")
    info = model_api.ModelInfo("f" * 16, 30, "cycle", ("cycle",), True, "w", 6 << 20, 100, 10000)
    out = subprocess.run([sys.executable, "-c", probe, info.to_json()], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "30", out.stderr[-2000:]
    assert model_api.ModelInfo.from_json(info.to_json()) == info
    with pytest.raises(ValueError, match="model info: window: must be a int"):
        model_api.ModelInfo.from_json(info.to_json().replace('"window": 30', '"window": "30"'))
