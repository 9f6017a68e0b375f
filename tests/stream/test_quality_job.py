"""The scheduled quality job (training_src/stream/quality_job.py) on an archive laid out as the score Lambda
writes it: FD001 training engines (run to failure) streamed through the stream core with the decision rule,
each failure recorded at its last cycle. Its figures are quality.quality's on the same items, its metrics
pass botocore's PutMetricData model, and its folders may be missing (the starter leaves empty inputs out)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.contracts.shapes import assert_calls_valid, problems, recording_calls
from training_src.stream import archive, core, quality, quality_job, state
from training_src.stream.decisions import Rule

DAY = "2026-12-06"
RULE = Rule(30.0, 0.1)


@pytest.fixture(scope="module")
def archived(tmp_path_factory, scorer, data_dir):
    """The archive root after streaming FD001 training engines 1-6 in records of 20 readings, and the items."""
    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD001")
    train = read_table(resolve_file(data_dir, p.file("train")), p)
    units = {str(int(u)): g.drop(columns=["unit"]).to_dict("records") for u, g in train.groupby("unit") if u <= 6}
    records = []
    for k in range(0, max(map(len, units.values())), 20):
        records += [{"asset_id": u, "readings": r[k:k + 20]} for u, r in units.items() if r[k:k + 20]]
    records += [{"asset_id": u, "event": "failure", "time": r[-1]["cycle"]} for u, r in units.items()]
    root = tmp_path_factory.mktemp("archive")
    states: dict = {}
    items, risk = [], []
    for b in range(0, len(records), 25):  # batches as the Lambda gets them
        batch = [(f"record {i}", i, r) for i, r in enumerate(records[b:b + 25], b + 1)]
        recs, errors = core.parse_batch(batch, scorer.info)
        assert not errors
        res = core.process_batch(recs, states, scorer, scorer.info, day=DAY, horizon=30, rule=RULE)
        for a, st in res.states.items():
            states[a] = state.decode(a, st.version, state.encode(st))
        name = f"{b + 1}-{b + len(batch)}.jsonl"
        for key, lines in {**archive.group(res.archive), **archive.side_partitions(res.archive, res.events,
                                                                                   DAY)}.items():
            (root / key).mkdir(parents=True, exist_ok=True)
            (root / key / name).write_text("\n".join(lines) + "\n")
        items += res.archive
        risk += res.events
    return root, items, risk


def test_the_jobs_figures_are_quality_py_on_the_same_items(archived, tmp_path, capsys):
    root, items, risk = archived
    out = tmp_path / "report"
    assert quality_job.main(["--answers", str(root / "answers"), "--outcomes", str(root / "outcomes"),
                             "--risk", str(root / "risk"), "--output", str(out), "--horizon", "30",
                             "--cap", "125"]) == 0
    report = json.loads((out / quality_job.REPORT_FILE).read_text())
    answers = [i for i in items if i["type"] == "answer"]
    last = {}
    for a in answers:
        last[(a["asset_id"], a["life"])] = max(last.get((a["asset_id"], a["life"]), a["time"]), a["time"])
    want = quality.quality(answers, [i for i in items if i["type"] == "event"], risk, horizon=30, lead=0.0, cap=125,
                           last_seen=last)
    assert report["versions"] == json.loads(json.dumps(want))
    (version, figures), = report["versions"].items()
    assert report["latest_version"] == version and figures["failures"] == 6
    assert figures["recall"] is not None and 0 < figures["coverage"] <= 1
    assert json.loads(capsys.readouterr().out)["risk_events"] == len(risk)


def test_metrics_per_version_and_for_the_latest_pass_the_api_model(archived, tmp_path):
    import boto3
    from moto import mock_aws

    root, _, _ = archived
    report = quality_job.build_report(quality_job.read_inputs(root / "answers", root / "outcomes", root / "risk"),
                                      horizon=30.0, lead=0.0, cap=125.0)
    data = quality_job.metric_data(report, "predmaint-rul")
    names = {d["MetricName"] for d in data}
    assert {"RMSE", "RMSECapped", "Coverage80", "AlertRecall", "MedianLead", "Failures"} <= names
    latest = [d for d in data if len(d["Dimensions"]) == 1]
    assert {d["MetricName"] for d in latest} == names
    assert not problems("cloudwatch", "PutMetricData", {"Namespace": "predmaint/Quality", "MetricData": data})
    with mock_aws(), recording_calls() as calls:
        cw = boto3.client("cloudwatch", region_name="eu-west-1")
        assert quality_job.publish(cw, "predmaint/Quality", data * 300) == -(-len(data) * 300 // 1000)
    assert_calls_valid(calls)


def test_missing_inputs_are_empty_and_bad_usage_is_one_line(tmp_path, capsys):
    assert quality_job.main(["--answers", str(tmp_path / "none"), "--outcomes", str(tmp_path / "none"),
                             "--risk", str(tmp_path / "none"), "--output", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / quality_job.REPORT_FILE).read_text())["versions"] == {}
    with pytest.raises(SystemExit) as exc:
        quality_job.main(["--horizon", "0", "--output", str(tmp_path / "r")])
    assert exc.value.code == 2 and "--horizon: must be > 0" in capsys.readouterr().err
    bad = tmp_path / "answers" / "day=2026-12-06" / "asset=1"
    bad.mkdir(parents=True)
    (bad / "x.jsonl").write_text("{junk\n")
    assert quality_job.main(["--answers", str(tmp_path / "answers"), "--output", str(tmp_path / "r")]) == 1
    assert "x.jsonl line 1: not JSON" in capsys.readouterr().err


def test_outputs_writes_the_report_and_the_fleet_page(tmp_path):
    written = quality_job.outputs({"versions": {}}, quality_job.QualityInputs(), tmp_path / "r", tmp_path / "fleet")
    assert written == [tmp_path / "r" / quality_job.REPORT_FILE, tmp_path / "fleet" / quality_job.FLEET_PAGE]
    assert json.loads(Path(written[0]).read_text()) == {"versions": {}}
    assert "0 assets ranked by risk" in written[1].read_text()


def _answer(asset, life, time, rul, p, version="v1"):
    return {"type": "answer", "asset_id": asset, "life": life, "time": time, "day": "2026-12-06",
            "answer": {"rul": rul, "rul_lower": rul - 5, "rul_upper": rul + 5, "failure_probability": p,
                       "model_version": version, "with_summary": True}}


def test_the_fleet_page_is_built_from_the_archive_alone(tmp_path):
    """The AWS job has no state table: rows, episodes and histories come from the archived answers,
    outcomes and risk events, and the page ranks them as the local page does."""
    from training_src.stream import fleet_page

    answers = [_answer("a", 0, t, 100 - t, 0.01) for t in range(1, 6)]
    answers += [_answer("b", 0, t, 30 - t, 0.2 * t) for t in range(1, 5)]
    answers += [_answer("c", 0, 1, 50, 0.1), _answer("c", 1, 3, 80, 0.02)]  # a new life after maintenance
    answers += [_answer("d", 0, 7, 3, 0.95)]
    outcomes = [{"type": "event", "asset_id": "c", "life": 0, "event": "maintenance", "time": 2},
                {"type": "event", "asset_id": "d", "life": 0, "event": "failure", "time": 9}]
    risk = [{"type": "AssetAtRisk", "asset_id": "b", "life": 0, "time": 3},
            {"type": "AssetAtRisk", "asset_id": "a", "life": 0, "time": 2},
            {"type": "AssetRiskCleared", "asset_id": "a", "life": 0, "time": 4}]
    rows, history = fleet_page.from_archive(answers, outcomes, risk)
    by = {r["asset_id"]: r for r in rows}
    assert by["b"]["at_risk"] and by["b"]["risk_since"] == 3 and by["b"]["rul"] == 26
    assert not by["a"]["at_risk"] and by["a"]["last"] == 5 and by["a"]["model_version"] == "v1"
    assert by["c"]["rul"] == 80 and [p["time"] for p in history["c"]] == [3.0]  # the current life only
    assert by["d"].get("rul") is None and by["d"]["last"] == 9.0 and "d" not in history  # failed: no answer yet
    assert [p["time"] for p in history["a"]] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [r["asset_id"] for r in fleet_page.rank(rows)] == ["b", "c", "a", "d"]
    inputs = quality_job.QualityInputs(answers=answers, outcomes=outcomes, risk=risk)
    page = quality_job.outputs({"versions": {}}, inputs, tmp_path / "r", tmp_path / "fleet")[1].read_text()
    order = [page.index(f"data-asset='{a}'") for a in ("b", "c", "a", "d")]
    assert order == sorted(order) and "data-at-risk='true'" in page


def test_the_failed_lives_histories_are_the_local_exports_bytes(archived, tmp_path, capsys):
    """With --fleet-data-output the job writes each failed life's history, from the archived readings of the
    assets with a recorded failure, byte for byte what local mode's export writes for the same archive."""
    from predmaint import fleetdata
    from predmaint.streaming import stream_dir
    from training_src.profiles import load_profile

    root, items, _ = archived
    out = tmp_path / "fleet-data"
    assert quality_job.main(["--answers", str(root / "answers"), "--outcomes", str(root / "outcomes"),
                             "--risk", str(root / "risk"), "--readings", str(root / "readings"),
                             "--output", str(tmp_path / "report"), "--fleet-data-output", str(out),
                             "--profile", "cmapss", "--subset", "FD001", "--horizon", "30"]) == 0
    assert json.loads(capsys.readouterr().out)["fleet_histories"] == 6
    # the same archive as local mode lays it out (one part.jsonl per asset and day)
    home = tmp_path / "home"
    for day in sorted((root / "readings").glob("asset=*/day=*")):
        local = stream_dir(home) / "archive" / "readings" / day.parent.name / day.name
        local.mkdir(parents=True)
        (local / "part.jsonl").write_text("".join(p.read_text() for p in sorted(day.glob("*.jsonl"))))
    profile = load_profile("cmapss", "FD001")
    exported, errors = fleetdata.export_failures(home, profile)
    assert errors == [] and len(exported) == 6
    assert sorted(p.name for p in out.iterdir()) == sorted(e.key.rsplit("/", 1)[-1] for e in exported)
    for e in exported:
        assert (out / e.key.rsplit("/", 1)[-1]).read_bytes() == e.path.read_bytes()
    failed = {str(i["asset_id"]) for i in items if i.get("event") == "failure"}
    assert {e.history.asset_id for e in exported} == failed


def test_fleet_data_needs_a_run_to_failure_profile_and_says_what_is_left_out(archived, tmp_path, capsys):
    root, _, _ = archived
    with pytest.raises(SystemExit):
        quality_job.main(["--fleet-data-output", str(tmp_path / "f"), "--output", str(tmp_path / "r")])
    assert "--fleet-data-output needs --profile" in capsys.readouterr().err
    assert quality_job.main(["--answers", str(root / "answers"), "--output", str(tmp_path / "r"),
                             "--fleet-data-output", str(tmp_path / "f"), "--profile", "ai4i2020"]) == 1
    assert "failures become training data only for a run-to-failure profile" in capsys.readouterr().err
    # a failure recorded for an asset whose readings are not in the input: one line, nothing written
    assert quality_job.main(["--answers", str(root / "answers"), "--outcomes", str(root / "outcomes"),
                             "--readings", str(tmp_path / "none"), "--output", str(tmp_path / "r"),
                             "--fleet-data-output", str(tmp_path / "f"), "--profile", "cmapss",
                             "--subset", "FD001"]) == 0
    err = capsys.readouterr().err
    assert "asset '1': a failure is recorded but no reading of it is archived" in err
    assert list((tmp_path / "f").iterdir()) == []
