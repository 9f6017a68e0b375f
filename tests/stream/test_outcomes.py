"""Local outcomes and live quality (predmaint/outcomes.py): `predmaint outcome add` checks every outcome
first (unknown asset, time before the first reading, duplicate failure: one line, nothing changes),
ends the life and closes the risk episode; `predmaint quality` joins the archive with the failures and
gives the figures computed offline from the same answers."""

from __future__ import annotations

import io
import json
import math

import pytest

from predmaint import outcomes, streaming
from predmaint.cli import main


def snapshot(home):
    """Everything the stream keeps under ``home``: state rows and every file's content."""
    root = streaming.stream_dir(home)
    rows = streaming.StateStore(root / "state.sqlite").db.execute(
        "SELECT asset_id, version, doc FROM assets ORDER BY asset_id").fetchall()
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jsonl"))}
    return rows, files


@pytest.fixture
def home(tmp_path, capsys, monkeypatch, fd001_refit, fd001_units):
    """Engines 1 and 2 streamed to their last test reading; engine 3 for its first 20 readings."""
    lines = [json.dumps({"asset_id": str(u), "readings": fd001_units[u][i:i + 10]})
             for u in (1, 2) for i in range(0, len(fd001_units[u]), 10)]
    lines.append(json.dumps({"asset_id": "3", "readings": fd001_units[3][:20]}))
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    h = tmp_path / "home"
    assert main(["stream", "--home", str(h), "--model-dir", str(fd001_refit), "--input", "-", "--batch", "1"]) == 0
    capsys.readouterr()
    return h


def add(home, model, *args):
    return main(["outcome", "add", "--home", str(home), "--model-dir", str(model), *args])


@pytest.mark.parametrize("args, message", [
    (["--asset", "9", "--event", "failure", "--time", "40"],
     "predmaint outcome add: error: outcome: asset '9' is unknown (no reading of it was streamed)"),
    (["--asset", "1", "--event", "failure", "--time", "0"],
     "predmaint outcome add: error: outcome: asset '1': time 0 is before its first reading (1)"),
    (["--asset", "3", "--event", "maintenance", "--time", "12"],
     "predmaint outcome add: error: outcome: asset '3': time 12 is before its last reading (20)"),
])
def test_bad_outcomes_are_one_line_and_change_nothing(home, capsys, fd001_refit, args, message):
    before = snapshot(home)
    assert add(home, fd001_refit, *args) == 2
    assert capsys.readouterr().err.splitlines() == [message]
    assert snapshot(home) == before


def test_a_file_with_one_bad_outcome_changes_nothing_and_a_duplicate_failure_is_refused(
        home, tmp_path, capsys, fd001_refit, fd001_units):
    last1 = fd001_units[1][-1]["cycle"]
    f = tmp_path / "outcomes.jsonl"
    f.write_text(json.dumps({"asset_id": "1", "event": "failure", "time": last1}) + "\n"
                 + json.dumps({"asset_id": "2", "event": "overhaul", "time": 3}) + "\n")
    before = snapshot(home)
    assert add(home, fd001_refit, "--file", str(f)) == 2
    assert capsys.readouterr().err.splitlines() == [
        "predmaint outcome add: error: outcomes.jsonl line 2: event: unknown event 'overhaul'; "
        "known: maintenance, failure"]
    assert snapshot(home) == before
    assert add(home, fd001_refit, "--asset", "1", "--event", "failure", "--time", str(last1)) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("recorded 1 outcome(s)")
    after = snapshot(home)
    assert add(home, fd001_refit, "--asset", "1", "--event", "failure", "--time", str(last1 + 5)) == 2
    assert "duplicate failure" in capsys.readouterr().err
    assert snapshot(home) == after
    row = {r["asset_id"]: r for r in streaming.fleet_rows(home)}["1"]
    assert row["readings"] == 0 and row["at_risk"] is False  # the failure ended the life


def test_quality_equals_the_figures_computed_offline_from_the_same_answers(home, capsys, fd001_refit, fd001_units):
    """Engines 1 and 2 fail at their last reading: realised RUL = last - t for every answer archived."""
    fails = {u: fd001_units[u][-1]["cycle"] for u in (1, 2)}
    for u, t in fails.items():
        assert add(home, fd001_refit, "--asset", str(u), "--event", "failure", "--time", str(t)) == 0
    capsys.readouterr()
    assert main(["quality", "--home", str(home), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["failures"] == 2
    answers, _, _, _ = outcomes.read_quality_inputs(home)
    err, inside = [], 0
    for a in answers:
        if a["asset_id"] in ("1", "2"):
            true = fails[int(a["asset_id"])] - a["time"]
            err.append(a["answer"]["rul"] - true)
            inside += a["answer"]["rul_lower"] <= true <= a["answer"]["rul_upper"]
    assert rows[0]["answers"] == len(err) == math.ceil(len(fd001_units[1]) / 10) + math.ceil(len(fd001_units[2]) / 10)
    assert rows[0]["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in err) / len(err)), rel=1e-12)
    assert rows[0]["coverage"] == pytest.approx(inside / len(err), rel=1e-12)
    assert rows[0]["pending_answers"] == 1  # engine 3 has not failed
    assert main(["quality", "--home", str(home)]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == list(outcomes.QUALITY_FIELDS)
