"""Local tuning (predmaint/tuning.py): the candidates it tries are the run plan's, as a SageMaker tuning job's are."""

from __future__ import annotations

from pathlib import Path

import pytest

from predmaint import tuning
from predmaint.modules import load_module
from tests.infra.conftest import REPO
from training_src import search_space
from training_src.profiles import load_profile


@pytest.mark.parametrize("hosts", [1, 2])
def test_local_tuning_samples_only_the_candidates_the_plan_defines(hosts: int, data_dir: Path, tmp_path: Path) -> None:
    """A plan for several training hosts defines only the candidates with a collective fit; the study
    local tuning runs starts and samples only those (before, it started and sampled every candidate and
    looked up definitions such a plan does not have). One host: every candidate, starting points first."""
    prep = load_module(REPO / "lambda" / "prepare" / "handler.py", "prepare_for_local_tuning", register=False)
    plan = prep.plan_run({"dataset": "cmapss", "profile": "cmapss", "subset": "FD001"}, prep.LocalStore(data_dir),
                         prep.Settings(training_instances=hosts))
    planned = list(search_space.tuned_algorithms(hosts))
    assert list(plan["tuning"]["definitions"]) == planned
    static = {a: d["static"] for a, d in plan["tuning"]["definitions"].items()}
    runner = tuning._Trials(tmp_path, load_profile("cmapss", "FD001"), 1, 0, None, static)
    study = tuning.new_study("minimize", 0, 12, list(runner.static))
    asked = []
    for i in range(12):  # past the enqueued starting points and TPE's random start-up trials
        trial = study.ask()
        algorithm, params = runner.suggest(trial)
        assert set(params) == {p.name for p in search_space.SEARCH_SPACE[algorithm]}
        asked.append(algorithm)
        study.tell(trial, 10.0 + (i * 7) % 5)
    assert asked[:len(planned)] == planned  # each candidate's starting point first
    assert set(asked) <= set(planned)
    if hosts > 1:
        assert set(asked) == {"xgboost"}
