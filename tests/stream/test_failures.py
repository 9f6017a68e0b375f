"""The fleet's failures as training data (training_src/stream/failures.py, predmaint/fleetdata.py): a replayed
fleet with recorded failures -> `predmaint quality` exports the failed lives in the profile's raw layout ->
the project's own reader takes them -> `predmaint run --fleet-data` trains on them and lists them in its
lineage. A failure recorded long after the last reading, or a profile without lives, is a one-line error."""

from __future__ import annotations

import io
import json

import pytest

from predmaint import fleetdata
from predmaint.cli import main
from training_src import preprocess
from training_src.profiles import load_profile
from training_src.stream import failures

UNITS = (1, 2, 3)


@pytest.fixture(scope="module")
def cmapss():
    return load_profile("cmapss", "FD001")


def test_a_failed_life_is_a_cmapss_block_with_a_unit_id_no_shipped_unit_uses(cmapss, fd001_units):
    readings = fd001_units[1]
    last = readings[-1]["cycle"]
    h = failures.export_failure(readings, cmapss, asset_id="engine 7/a", life=2, failure_time=last)
    rows = [line.split() for line in h.text.splitlines()]
    assert len(rows) == h.rows == len(readings)
    assert all(len(r) == len(cmapss.columns) for r in rows)
    assert {r[0] for r in rows} == {str(h.unit_id)} and h.unit_id > 10**12 > 10**6
    assert h.unit_id == failures.fleet_unit_id("engine 7/a", 2) != failures.fleet_unit_id("engine 7/a", 3)
    # every value read back bit for bit, in the profile's column order
    assert [float(v) for v in rows[-1][1:]] == [float(readings[-1][c]) for c in cmapss.columns[1:]]
    assert failures.object_key("engine 7/a", 2, cmapss) == "cmapss/train_FD001/fleet-engine%207%2Fa-2.txt"


def test_a_failure_long_after_the_last_reading_or_a_profile_without_lives_is_refused(cmapss, fd001_units):
    readings = fd001_units[1]
    last = readings[-1]["cycle"]
    failures.export_failure(readings, cmapss, asset_id="1", life=0, failure_time=last + 1)  # one step: at its end
    with pytest.raises(failures.FailureError, match=r"^asset '1' life 0: the failure at .* is 30 after the last "
                                                    r"reading .*: the history would end early$"):
        failures.export_failure(readings, cmapss, asset_id="1", life=0, failure_time=last + 30)
    with pytest.raises(failures.FailureError, match="a history needs at least 2"):
        failures.export_failure(readings[:1], cmapss, asset_id="1", life=0, failure_time=last)
    with pytest.raises(failures.FailureError, match="only for a run-to-failure profile"):
        failures.export_failure(readings, load_profile("ai4i2020"), asset_id="1", life=0, failure_time=last)


@pytest.fixture(scope="module")
def fleet_home(tmp_path_factory, fd001_refit, fd001_units):
    """FD001 test engines 1-3 streamed 10 readings a record, each failing at its last reading."""
    home = tmp_path_factory.mktemp("fleet") / "home"
    lines = [json.dumps({"asset_id": str(u), "readings": fd001_units[u][i:i + 10]})
             for u in UNITS for i in range(0, len(fd001_units[u]), 10)]
    lines += [json.dumps({"asset_id": str(u), "event": "failure", "time": fd001_units[u][-1]["cycle"]}) for u in UNITS]
    mp = pytest.MonkeyPatch()
    mp.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    try:
        assert main(["stream", "--home", str(home), "--model-dir", str(fd001_refit), "--input", "-"]) == 0
    finally:
        mp.undo()
    return home


def test_quality_exports_the_failures_and_the_projects_reader_takes_them(fleet_home, cmapss, fd001_units, capsys):
    capsys.readouterr()
    assert main(["quality", "--home", str(fleet_home), "--json"]) == 0
    out = capsys.readouterr()
    assert [json.loads(line)["failures"] for line in out.out.splitlines()] == [len(UNITS)]
    assert f"predmaint quality: {len(UNITS)} failure histories ({len(UNITS)} new or changed" in out.err
    files = fleetdata.fleet_files(fleet_home, cmapss)
    assert [f.name for f in files] == [f"fleet-{u}-0.txt" for u in UNITS]
    for u, f in zip(UNITS, files, strict=True):
        df = preprocess.read_readings(f, cmapss)  # the reader a run uses: layout, gaps, times
        assert len(df) == len(fd001_units[u]) and df["unit"].nunique() == 1
        assert df["cycle"].tolist() == [r["cycle"] for r in fd001_units[u]]
    before = {f: f.stat().st_mtime_ns for f in files}
    assert main(["quality", "--home", str(fleet_home), "--json"]) == 0
    assert "(0 new or changed" in capsys.readouterr().err  # a second export rewrites nothing
    assert {f: f.stat().st_mtime_ns for f in files} == before


def test_a_run_with_fleet_data_trains_on_them_and_lists_them_in_its_lineage(fleet_home, data_dir, cmapss,
                                                                          fd001_units, capsys):
    assert main(["quality", "--home", str(fleet_home)]) == 0
    files = fleetdata.fleet_files(fleet_home, cmapss)
    assert main(["run", "--home", str(fleet_home), "--data-dir", str(data_dir), "--profile", "cmapss",
                 "--subset", "FD001", "--trials", "1", "--parallel", "1", "--run-id", "with-fleet",
                 "--fleet-data"]) == 0
    out = capsys.readouterr().out
    rows = sum(len(fd001_units[u]) for u in UNITS)
    assert f"+ fleet data: {len(UNITS)} failure histories ({len(UNITS)} units, {rows} rows)" in out
    run = fleet_home / "runs" / "with-fleet"
    lineage = json.loads((run / "fleet-data.json").read_text())
    assert lineage["units"] == len(UNITS) and lineage["rows"] == rows
    assert [(f["path"], f["sha256"]) for f in lineage["files"]] == [
        (str(f), preprocess.file_sha256(f)) for f in files]
    manifest = json.loads((run / "processed" / "manifest.json").read_text())
    parts = [p["path"] for p in manifest["files"]["train"]["parts"]]
    assert parts == sorted(["cmapss/train_FD001/part-00000.txt.gz", *(f"cmapss/train_FD001/{f.name}" for f in files)])
    shipped = preprocess.read_readings(next(data_dir.glob("cmapss/train_FD001.txt*")), cmapss)
    assert sum(manifest["assets"][k] for k in ("train", "validation")) == shipped["unit"].nunique() + len(UNITS)
    assert "Fleet data" in (run / "report.html").read_text()
    from predmaint.registry import Registry

    package = next(p for p in Registry(fleet_home).list_packages() if p.run_id == "with-fleet")
    assert package.lineage["fleet_data"] == lineage  # the registered model's lineage too


def test_fleet_data_without_histories_is_one_line_and_leaves_nothing(tmp_path, data_dir, capsys):
    home = tmp_path / "empty"
    assert main(["run", "--home", str(home), "--data-dir", str(data_dir), "--trials", "1", "--fleet-data"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("predmaint run: error: --fleet-data: no fleet histories for profile cmapss")
    assert not (home / "runs").exists()
