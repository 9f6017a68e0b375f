"""Import a Python file by path under a chosen module name (Lambda handlers, artifact code, fixtures).

The Lambda folders and a model artifact's ``code/`` are not packages, and several copies of a
``handler.py`` or ``conftest.py`` must not collide in ``sys.modules``; local mode and the tests
load them the way the Lambda runtime and the SageMaker containers do: by file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_module(path: str | Path, name: str, *, register: bool = True) -> ModuleType:
    """Execute ``path`` as module ``name`` and return it.

    ``register`` puts it in ``sys.modules`` first (dataclasses and pickling look the module up
    there); raises ImportError when the file cannot be loaded.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
