"""Fixtures for the reliability tests: the local-mode fixtures (a small real FD001 model trained once per
session for all xdist workers, a registry holding it as champion, a `predmaint serve` subprocess) reused
from tests/local/conftest.py rather than duplicated, plus the model loaded in-process for handler tests.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

LOCAL = Path(__file__).resolve().parents[1] / "local"
sys.path.insert(0, str(LOCAL))  # localkit (ServerProcess, http, ...)


def _load_local_conftest() -> Any:
    # Loaded under a private name: with --import-mode=importlib the two conftest.py files must not
    # collide in sys.modules. The model fixture locks a shared folder, so the model is still built once.
    spec = importlib.util.spec_from_file_location("reliability_local_fixtures", LOCAL / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_local = _load_local_conftest()
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
