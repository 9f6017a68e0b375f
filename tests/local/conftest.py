"""Fixtures for local-mode tests: a small real model trained once per test session, test-unit readings,
and a real `predmaint serve` subprocess.

The model is built once for all xdist workers (a lock in the shared base temp dir), with train.py under
the SageMaker script contract exactly as the pipeline runs it, but with few boosting rounds.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from localkit import ServerProcess, build_model, free_port, read_test_units


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """An extracted model directory (xgboost-model, feature_spec.json, code/...) trained on FD001."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one folder for all xdist workers
    root = shared / "local-model"
    with open(shared / "local-model.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            root.mkdir(exist_ok=True)
            build_model(data_dir, root)
            (root / "done").write_text("ok")
    return root / "model"


@pytest.fixture(scope="session")
def model_tar(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from predmaint.registry import make_model_archive

    return make_model_archive(model_dir, tmp_path_factory.mktemp("artifact") / "model.tar.gz")


@pytest.fixture(scope="session")
def test_units(data_dir: Path) -> dict[int, list[dict[str, float]]]:
    return read_test_units(data_dir)


@pytest.fixture(scope="session")
def registry_home(tmp_path_factory: pytest.TempPathFactory, model_tar: Path) -> Path:
    """A home whose registry holds the test model as version 1 (the champion)."""
    from predmaint.registry import Registry

    home = tmp_path_factory.mktemp("home")
    Registry(home).register(artifact=model_tar, evaluation={"regression_metrics": {"rmse": {"value": 20.0}}},
                            lineage={"profile": "cmapss"}, approved=True, reason="test champion", run_id="fixture")
    return home


@pytest.fixture(scope="session")
def server(registry_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`predmaint serve` of the registry champion on a free port, 2 workers."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    srv = ServerProcess(["serve", "--home", str(registry_home), "--workers", "2"], free_port(), log)
    try:
        srv.wait_ping()
        yield srv
    finally:
        srv.stop()


