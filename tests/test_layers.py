"""The Lambdas' imports: each handler (lambda/<name>/handler.py, deployed as a flat folder with the
shared modules beside it) may import the standard library, boto3, Powertools and the shared pure
modules (stacks/assets.py LAMBDA_SHARED_MODULES), which themselves import the standard library only.
A heavier import would fail in the Lambda runtime, where none of training_src's dependencies exist.
(The packages' layers and cycles are import-linter contracts: pyproject.toml [tool.importlinter].)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from stacks.assets import LAMBDA_SHARED_MODULES

REPO = Path(__file__).resolve().parent.parent
SHARED = {Path(m).stem for m in LAMBDA_SHARED_MODULES}
RUNTIME = {"boto3", "botocore", "aws_lambda_powertools"}  # in the Lambda runtime / the Powertools layer


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (``training_src.x`` counts as ``x``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module + "." + a.name if node.module == "training_src" else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            out.add(parts[1] if parts[0] == "training_src" and len(parts) > 1 else parts[0])
    return out - {"__future__"}


@pytest.mark.parametrize("handler", sorted(REPO.glob("lambda/*/handler.py")), ids=lambda p: p.parent.name)
def test_lambda_handlers_import_only_what_the_lambda_runtime_has(handler: Path) -> None:
    bad = {m for m in imported_modules(handler) if m not in sys.stdlib_module_names | RUNTIME | SHARED}
    assert not bad, f"{handler.relative_to(REPO)} imports {sorted(bad)}, which the Lambda package lacks"


@pytest.mark.parametrize("module", sorted(SHARED))
def test_shared_modules_are_standard_library_only(module: str) -> None:
    bad = {m for m in imported_modules(REPO / "training_src" / f"{module}.py")
           if m not in sys.stdlib_module_names | SHARED}
    assert not bad, f"training_src/{module}.py imports {sorted(bad)}; the Lambdas ship it without dependencies"


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "handler.py"
    probe.write_text("import json\nimport numpy as np\nfrom training_src import features\n")
    assert imported_modules(probe) - sys.stdlib_module_names == {"numpy", "features"}
