"""bench/stage_alone.py's command line: settings, neighbour loads and the environment a stage runs in.
(The measurement itself is a benchmark, run by hand; docs/scale.md quotes it.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def stage_alone():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("stage_alone", BENCH / "stage_alone.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_a_setting_sets_and_removes_variables(stage_alone):
    name, changes = stage_alone.parse_setting("passive:OMP_WAIT_POLICY=PASSIVE,-GOMP_SPINCOUNT")
    assert name == "passive" and changes == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}
    assert stage_alone.parse_setting("as-run:") == ("as-run", {})
    env = stage_alone.with_setting({"GOMP_SPINCOUNT": "1000", "KEEP": "1"}, changes)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", "KEEP": "1"}


@pytest.mark.parametrize("bad, says", [("spin", "expected NAME:CHANGES"), (":A=1", "expected NAME:CHANGES"),
                                       ("x:A", "neither VAR=VALUE nor -VAR"), ("x:=1", "neither"), ("x:-", "neither")])
def test_a_bad_setting_says_what_is_wrong(stage_alone, bad, says):
    with pytest.raises(ValueError, match=says):
        stage_alone.parse_setting(bad)


def test_neighbour_loads_are_none_same_or_a_number_of_loops(stage_alone):
    assert stage_alone.parse_neighbours("none, loops2,same") == ["none", "loops2", "same"]
    for bad in ("loops0", "loops", "busy", ","):
        with pytest.raises(ValueError, match="--neighbours"):
            stage_alone.parse_neighbours(bad)


def test_a_stage_runs_in_the_runners_environment_and_writes_outside_the_run(stage_alone, tmp_path, monkeypatch):
    """The evaluation's command is the runner's, in ``runner.script_environment()`` (libarrow's pool and the
    thread settings included), writing under the scratch folder given, not into the run folder."""
    from predmaint import runner

    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    run, out = tmp_path / "run", tmp_path / "scratch"
    argv, env = stage_alone.stage_command(run, "evaluate", out, 0)
    assert argv == runner.evaluate_command(run, run / "model.tar.gz", out / "evaluation")
    assert env == runner.script_environment() and env["ARROW_DEFAULT_MEMORY_POOL"] == "system"


def test_the_command_line_refuses_a_folder_that_is_not_a_finished_run(stage_alone, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        stage_alone.main(["--run", str(tmp_path), "--stage", "evaluate"])
    assert exc.value.code == 2
    assert "not a finished local run folder (no plan.json, tuning.json, processed, model.tar.gz)" in capsys.readouterr().err
