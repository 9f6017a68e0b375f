"""Fixtures for the reliability tests: the local-mode fixtures (a small real FD001 model trained once per
session for all xdist workers, a registry holding it as champion, a `predmaint serve` subprocess) reused
from tests/local/conftest.py rather than duplicated, plus the model loaded in-process for handler tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from predmaint.modules import load_module

LOCAL = Path(__file__).resolve().parents[1] / "local"
sys.path.insert(0, str(LOCAL))  # localkit (ServerProcess, http, ...)


# Loaded under a private name: with --import-mode=importlib the two conftest.py files must not
# collide in sys.modules. The model fixture locks a shared folder, so the model is still built once.
_local = load_module(LOCAL / "conftest.py", "reliability_local_fixtures")
model_dir = _local.model_dir
model_tar = _local.model_tar
test_units = _local.test_units
registry_home = _local.registry_home
server = _local.server


@pytest.fixture(scope="session")
def loaded_model(model_dir: Path) -> Any:
    """The test model loaded in this process by the repository's inference handlers (the artifact's
    code/ is a copy of them), so a handler bug shows up here without a server."""
    from training_src import inference

    return inference.model_fn(str(model_dir))
