"""Local mode of the stateful path (predmaint/streaming.py): every FD001 test engine replayed as a stream
through SQLite state and the archive gives, at its last reading, the whole-history answer bit for bit;
duplicates, reordering and a kill-and-resume change nothing; a promotion's rebuild gives the new model's
whole-history answers; the CLI commands."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import pytest
from streamkit import HORIZON, chunked_records, whole_history_answers

from predmaint import streaming
from predmaint.cli import main
from predmaint.modules import load_module
from training_src.stream import model_api


def items(records, start=1):
    return [(f"record {i}", i, r) for i, r in enumerate(records, start)]


def answers(home):
    return {r["asset_id"]: r for r in streaming.fleet_rows(home)}


def assert_whole_history(home, units, expected, version=None):
    store = streaming.StateStore(streaming.stream_dir(home) / "state.sqlite")
    states = {s.asset_id: s for s in store.all()}
    assert len(states) == len(units)
    for u, want in expected.items():
        got = states[u].answer
        assert {k: got[k] for k in want} == want, u  # bit for bit: every field of the answer
        assert got["with_summary"] is True and got["readings"] == len(units[int(u)])
        if version:
            assert got["model_version"] == version


@pytest.fixture(scope="module")
def expected(scorer, fd001_units):
    return whole_history_answers(scorer, fd001_units)


def test_every_fd001_engine_in_random_chunks_gives_its_whole_history_answer(tmp_path, scorer, fd001_units, expected):
    records = list(chunked_records(fd001_units, seed=7))
    summary = streaming.run_stream(tmp_path, items(records), scorer, scorer.info, batch=100, horizon=HORIZON)
    assert summary.errors == 0 and summary.readings == sum(map(len, fd001_units.values()))
    assert summary.calls == summary.batches  # one endpoint call per batch
    assert_whole_history(tmp_path, fd001_units, expected)


class _Watched(model_api.InProcessScorer):
    """The in-process scorer, noting for every request whether the compiled reader read it, and checking its
    answer against the Python path's (the same model without the reader) byte for byte."""

    def __init__(self, model):
        super().__init__(model)
        self.python = dataclasses.replace(model, reader=None)
        self.read, self.declined, self.short = 0, [], 0

    def score_body(self, body):
        got = self.model.reader.read(body)
        if got is not None:
            self.read += 1
            self.short += got[4] is not None  # an asset short of the window: the answer warns
        else:
            self.declined.append(body)
        fast = self.handle(self.model, body, "application/json", "application/json")
        assert fast == self.handle(self.python, body, "application/json", "application/json")
        return super().score_body(body)


def test_a_stream_replay_is_read_by_the_compiled_reader(tmp_path, fd001_refit, fd001_units, expected):
    """The stream's requests (life summaries and a horizon in every instance; records from 1 reading up, so
    every engine's first requests are short of the model's window and carry its warning) are all read by the
    compiled reader, every answer equals the Python path's byte for byte, and the last answers are the
    whole-history ones."""
    scorer = _Watched(model_api.load_model(fd001_refit))
    if scorer.model.reader is None:
        pytest.skip("no C compiler here: no compiled reader")
    records = list(chunked_records(fd001_units, seed=7, lo=1, hi=50))
    summary = streaming.run_stream(tmp_path, items(records), scorer, scorer.info, batch=25, horizon=HORIZON)
    assert summary.errors == 0 and summary.calls > 10 and scorer.short > 0
    assert scorer.declined == [] and scorer.read == summary.calls  # every request: the compiled reader
    assert_whole_history(tmp_path, fd001_units, expected)


@pytest.mark.slow
def test_every_fd002_engine_in_random_chunks_gives_its_whole_history_answer(tmp_path, fd002_model, fd002_units):
    """Six operating conditions: the regime normalisation and the summaries stay exact in a stream."""
    scorer = model_api.InProcessScorer(model_api.load_model(fd002_model))
    records = list(chunked_records(fd002_units, seed=12))
    summary = streaming.run_stream(tmp_path, items(records), scorer, scorer.info, batch=200, horizon=HORIZON)
    assert summary.errors == 0 and summary.readings == sum(map(len, fd002_units.values())) == 33991
    assert_whole_history(tmp_path, fd002_units, whole_history_answers(scorer, fd002_units))


def test_duplicates_reordering_and_kill_and_resume_change_nothing(tmp_path, scorer, fd001_units, expected):
    rng = random.Random(11)
    records = list(chunked_records(fd001_units, seed=8))
    noisy = []
    for r in records:  # a device resending some records, and records of a batch arriving out of order
        noisy.append(r)
        if rng.random() < 0.15:
            noisy.append(r)
    numbered = items(noisy)
    for b in range(0, len(numbered), 60):
        block = numbered[b:b + 60]
        rng.shuffle(block)
        numbered[b:b + 60] = block
    calls = []

    def dies(instances):  # the process is killed in the middle of the 5th batch
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return scorer(instances)

    with pytest.raises(KeyboardInterrupt):
        streaming.run_stream(tmp_path, numbered, dies, scorer.info, batch=60, horizon=HORIZON)
    assert 0 < len(answers(tmp_path)) < len(fd001_units)
    streaming.run_stream(tmp_path, numbered, scorer, scorer.info, batch=60, horizon=HORIZON)  # resume: all again
    assert_whole_history(tmp_path, fd001_units, expected)
    before = (streaming.stream_dir(tmp_path) / "state.sqlite").read_bytes()
    again = streaming.run_stream(tmp_path, numbered[-200:], scorer, scorer.info, batch=60, horizon=HORIZON)
    assert again.calls == 0 and (streaming.stream_dir(tmp_path) / "state.sqlite").read_bytes() == before


@pytest.mark.slow
def test_after_a_promotion_the_rebuild_gives_the_new_models_whole_history_answers(
        tmp_path, scorer, fd001_units, second_model):
    new = model_api.InProcessScorer(model_api.load_model(second_model))
    assert new.info.fingerprint != scorer.info.fingerprint
    records = list(chunked_records(fd001_units, seed=9))
    first, late, rest = records[:len(records) // 2], [], records[len(records) // 2:]
    streaming.run_stream(tmp_path, items(first), scorer, scorer.info, batch=100, horizon=HORIZON)
    # the rebuild reads the states at its cut; meanwhile the old model takes a few more readings per asset
    store = streaming.StateStore(streaming.stream_dir(tmp_path) / "state.sqlite")
    cut = list(store.all())
    arch = streaming.LocalArchive(streaming.stream_dir(tmp_path) / "archive")
    from training_src.stream import rebuild

    built = rebuild.rebuild(cut, arch.lines_of, new, new.info, horizon=HORIZON)
    assert not built.errors and len(built.states) == len(cut)
    seen = set()
    remaining = {}
    for r in rest:
        remaining[r["asset_id"]] = remaining.get(r["asset_id"], 0) + 1
    for r in rest:  # each asset's next record, if short and not its last, goes to the old model first
        if r["asset_id"] not in seen and len(r["readings"]) <= 10 and remaining[r["asset_id"]] > 1:
            late.append(r)
        seen.add(r["asset_id"])
    assert len(late) > 10
    rest = [r for r in rest if not any(r is x for x in late)]
    n = len(first)
    streaming.run_stream(tmp_path, items(late, n + 1), scorer, scorer.info, batch=100, horizon=HORIZON)
    applied = streaming.commit_rebuilt(store, built.states, new.info.fingerprint)
    assert applied == len(cut)  # every summary caught up from the tail
    streaming.run_stream(tmp_path, items(rest, n + len(late) + 1), new, new.info, batch=100, horizon=HORIZON)
    assert_whole_history(tmp_path, fd001_units, whole_history_answers(new, fd001_units))


def test_cli_stream_and_fleet(tmp_path, capsys, scorer, fd001_refit, data_dir, fd001_units, expected):
    model = tmp_path / "model"
    shutil.copytree(fd001_refit, model)
    home = tmp_path / "home"
    code = main(["stream", "--home", str(home), "--model-dir", str(model), "--chunk", "7",
                 "--input", str(data_dir / "cmapss" / "test_FD001.txt.gz")])
    out, err = capsys.readouterr()
    assert code == 0, err
    *events, last = out.splitlines()  # a line per risk event, then the summary
    assert last.startswith("streamed 1911 records (13096 readings)") and "0 record(s) refused" in last
    assert last.endswith(f"; {len(events)} risk event(s)")
    assert all(e.startswith("predmaint stream: AssetAtRisk ") for e in events)  # a first replay: none clears
    assert main(["fleet", "--home", str(home), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 100 and list(rows[0]) == list(streaming.FLEET_FIELDS)
    by = {r["asset_id"]: r for r in rows}
    for u in ("1", "50", "100"):
        want = expected[u]
        assert [by[u][k] for k in ("rul", "rul_lower", "rul_upper", "failure_probability")] == \
            [want["rul"], want["rul_lower"], want["rul_upper"], want["failure_probability"]]
        assert by[u]["with_summary"] is True and by[u]["last"] == fd001_units[int(u)][-1]["cycle"]
    assert main(["fleet", "--home", str(home)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == list(streaming.FLEET_FIELDS) and len(table) == 101


def test_cli_stdin_bad_lines_fail_alone(tmp_path, capsys, monkeypatch, fd001_refit, fd001_units):
    import io

    good = json.dumps({"asset_id": "a", "readings": fd001_units[3][:40]})
    lines = [good, "{not json", json.dumps({"asset_id": "b", "event": "overhaul", "time": 4}), "",
             json.dumps({"asset_id": "c", "readings": fd001_units[4][:35]})]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    code = main(["stream", "--home", str(tmp_path), "--model-dir", str(fd001_refit), "--input", "-"])
    out, err = capsys.readouterr()
    assert "2 record(s) refused" in out
    assert code == 2
    assert err.splitlines() == [
        "predmaint stream: line 2: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1))",
        "predmaint stream: line 3: event: unknown event 'overhaul'; known: maintenance, failure"]
    assert sorted(answers(tmp_path)) == ["a", "c"]
    assert main(["fleet", "--home", str(tmp_path / "nothing")]) == 2
    assert "no stream state under" in capsys.readouterr().err


@pytest.mark.slow
def test_a_new_champion_triggers_the_rebuild(tmp_path, capsys, fd001_refit, second_model, fd001_units, data_dir):
    """``predmaint run``'s hook (streaming.after_promotion): the stream's assets get the new champion's
    summaries, and their answers become its whole-history answers."""
    from predmaint.registry import Registry, make_model_archive

    home = tmp_path / "home"
    registry = Registry(home)
    for i, model in enumerate((fd001_refit, second_model), 1):
        make_model_archive(model, tmp_path / f"m{i}.tar.gz")
    ev = {"regression_metrics": {"rmse": {"value": 20.0}}}
    registry.register(artifact=tmp_path / "m1.tar.gz", evaluation=ev, lineage={}, approved=True, reason="first",
                      run_id="r1")
    assert streaming.after_promotion(home, None) is None  # no stream state yet: nothing to do
    code = main(["stream", "--home", str(home), "--input", str(data_dir / "cmapss" / "test_FD001.txt.gz")])
    assert code == 0, capsys.readouterr().err
    assert {r["model_version"] for r in streaming.fleet_rows(home)} == {"1"}
    assert streaming.after_promotion(home, "1") is None  # the champion did not change
    registry.register(artifact=tmp_path / "m2.tar.gz", evaluation=ev, lineage={}, approved=True, reason="better",
                      run_id="r2")
    rebuilt = streaming.after_promotion(home, "1")
    assert rebuilt is not None and len(rebuilt.states) == 100 and not rebuilt.errors
    new = model_api.InProcessScorer(model_api.load_model(second_model))
    assert_whole_history(home, fd001_units, whole_history_answers(new, fd001_units), version="2")


@pytest.mark.slow
def test_cli_stream_against_a_running_server_gives_the_in_process_answers(tmp_path, capsys, fd001_refit,
                                                                         fd001_units, expected):
    """``--url``: the same stream against ``predmaint serve`` (its workers load the artifact's own code)."""
    localkit = load_module(Path(__file__).resolve().parents[1] / "local" / "localkit.py", "stream_localkit")
    units = {u: fd001_units[u] for u in list(fd001_units)[:30]}
    lines = tmp_path / "records.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in chunked_records(units, seed=4)))
    srv = localkit.ServerProcess(["serve", "--model-dir", str(fd001_refit), "--workers", "1"],
                                 localkit.free_port(), tmp_path / "serve.log")
    try:
        srv.wait_ping()
        code = main(["stream", "--home", str(tmp_path / "home"), "--model-dir", str(fd001_refit),
                     "--input", str(lines), "--url", f"http://127.0.0.1:{srv.port}", "--horizon", str(HORIZON)])
    finally:
        srv.stop()
    assert code == 0, capsys.readouterr().err
    rows = answers(tmp_path / "home")
    for u in units:
        want = expected[str(u)]
        assert [rows[str(u)][k] for k in ("rul", "rul_lower", "rul_upper", "failure_probability")] == \
            [want["rul"], want["rul_lower"], want["rul_upper"], want["failure_probability"]], u
        assert rows[str(u)]["with_summary"] is True


def test_an_unreadable_state_row_fails_its_asset_alone(tmp_path, capsys, monkeypatch, fd001_refit, fd001_units):
    import io
    import sqlite3

    first = [{"asset_id": a, "readings": fd001_units[u][:35]} for a, u in (("a'1", 3), ("c", 4))]
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(json.dumps(r) + "\n" for r in first)))
    assert main(["stream", "--home", str(tmp_path), "--model-dir", str(fd001_refit), "--input", "-"]) == 0
    db = sqlite3.connect(streaming.stream_dir(tmp_path) / "state.sqlite")
    db.execute("UPDATE assets SET doc = '{\"taken\": 1' WHERE asset_id = ?", ("a'1",))
    db.commit()
    capsys.readouterr()
    assert main(["fleet", "--home", str(tmp_path), "--json"]) == 0
    rows = {r["asset_id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["a'1"]["error"].startswith("state of asset \"a'1\": not JSON") and rows["c"]["readings"] == 35
    more = [{"asset_id": a, "readings": fd001_units[u][35:40]} for a, u in (("a'1", 3), ("c", 4))]
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(json.dumps(r) + "\n" for r in more)))
    assert main(["stream", "--home", str(tmp_path), "--model-dir", str(fd001_refit), "--input", "-"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("predmaint stream: line 1: state of asset \"a'1\": not JSON"), err
    assert answers(tmp_path)["c"]["readings"] == 40
