"""Fixtures for the container conformance tests: the shared local-mode test model (trained once per
session by train.py, tests/local/conftest.py) and the container environment's helpers (containerkit).

Every test here shares ``xdist_group("container")``: one worker runs them one after another (they
start servers and jobs; the machine has two cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from predmaint.modules import load_module

HERE = Path(__file__).resolve().parent
LOCAL = HERE.parent / "local"
sys.path.insert(0, str(HERE))  # containerkit
sys.path.insert(0, str(LOCAL))  # localkit

_local = load_module(LOCAL / "conftest.py", "container_local_fixtures")
model_dir = _local.model_dir
model_tar = _local.model_tar
test_units = _local.test_units
registry_home = _local.registry_home
server = _local.server  # `predmaint serve`, to answer the shared corpus beside the container


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.xdist_group("container"))
