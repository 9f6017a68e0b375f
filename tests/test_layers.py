"""The Lambdas' imports: each handler (lambda/<name>/handler.py, deployed as a flat folder with the
shared modules beside it) may import the standard library, boto3, Powertools and the shared pure
modules (stacks/assets.py LAMBDA_SHARED_MODULES) and packages (LAMBDA_SHARED_PACKAGES: the candidate
algorithms, whose ranges the prepare Lambda plans with), which themselves import the standard library only
when they are imported (a candidate module imports NumPy, xgboost or scikit-learn inside the functions that
fit, save and load, which only training and serving call). A heavier import would fail in the Lambda
runtime, where none of training_src's dependencies exist.
(The packages' layers and cycles are import-linter contracts: pyproject.toml [tool.importlinter].)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.assets import (
    LAMBDA_FUNCTION_PACKAGES,
    LAMBDA_SHARED_MODULES,
    LAMBDA_SHARED_PACKAGES,
    lambda_bundle_files,
)

REPO = Path(__file__).resolve().parent.parent
SHARED = {Path(m).stem for m in LAMBDA_SHARED_MODULES} | set(LAMBDA_SHARED_PACKAGES) | \
    {p for packages in LAMBDA_FUNCTION_PACKAGES.values() for p in packages}
#: what the Lambda runtime lacks and a shared module must not import when it is imported
HEAVY = ("numpy", "pandas", "scipy", "sklearn", "xgboost", "pyarrow")
RUNTIME = {"boto3", "botocore", "aws_lambda_powertools"}  # in the Lambda runtime / the Powertools layer


def _import_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """The nodes that run when the module is imported: everything but function bodies."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))
    return out


def imported_modules(path: Path, import_time_only: bool = False) -> set[str]:
    """Top-level names of every module ``path`` imports (``training_src.x`` counts as ``x``); with
    ``import_time_only``, only the imports that run when the module is imported (not inside functions)."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in _import_time_nodes(tree) if import_time_only else ast.walk(tree):
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


@pytest.mark.parametrize("module", sorted(Path(m).stem for m in LAMBDA_SHARED_MODULES))
def test_shared_modules_are_standard_library_only(module: str) -> None:
    bad = {m for m in imported_modules(REPO / "training_src" / f"{module}.py")
           if m not in sys.stdlib_module_names | SHARED}
    assert not bad, f"training_src/{module}.py imports {sorted(bad)}; the Lambdas ship it without dependencies"


@pytest.mark.parametrize("path", sorted(p for pkg in LAMBDA_SHARED_PACKAGES for p in (REPO / "training_src" / pkg)
                                        .glob("*.py")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shared_packages_import_the_standard_library_only_when_imported(path: Path) -> None:
    bad = {m for m in imported_modules(path, import_time_only=True) if m not in sys.stdlib_module_names | SHARED}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)} at import time; the Lambdas ship it"


def test_the_prepare_lambda_package_plans_without_heavy_libraries(tmp_path: Path) -> None:
    # the staged prepare package (handler.py beside training_src/), imported with NumPy & co. made unimportable,
    # as in the Lambda runtime
    for rel, data in lambda_bundle_files("prepare").items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    probe = (f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
             f"for name in {HEAVY!r}:\n    sys.modules[name] = None\n"
             "import handler\nfrom training_src import search_space\n"
             f"assert search_space.__file__.startswith({str(tmp_path)!r}), search_space.__file__\n"
             "print(sorted(search_space.ALGORITHMS), sorted(search_space.sagemaker_parameter_ranges('xgboost')))\n"
             f"assert not any(m in sys.modules and sys.modules[m] is not None for m in {HEAVY!r})\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'xgboost'" in out.stdout and "ContinuousParameterRanges" in out.stdout


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "handler.py"
    probe.write_text("import json\nimport numpy as np\nfrom training_src import features\n"
                     "def fit():\n    import xgboost\n")
    assert imported_modules(probe) - sys.stdlib_module_names == {"numpy", "features", "xgboost"}
    assert imported_modules(probe, import_time_only=True) - sys.stdlib_module_names == {"numpy", "features"}


def test_the_functions_ship_pinned_powertools_built_for_their_runtime() -> None:
    """Powertools is in every function's package, not a layer whose content cannot be checked offline:
    the pins are requirements.txt's (the versions the handler tests run), built for the functions'
    Python (Makefile LAMBDA_PYTHON = stacks/functions.py LAMBDA_PYTHON, the runtime the stacks set)."""
    import re

    from stacks import assets, functions

    bundle = {k.split("==")[0].lower().replace("_", "-"): k.split("==")[1] for k in
              (REPO / "lambda" / "requirements-bundle.txt").read_text().split() if "==" in k}
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M))
    pins = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    assert bundle and all(pins[name] == version for name, version in bundle.items()), (bundle, pins)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^LAMBDA_PYTHON := {re.escape(functions.LAMBDA_PYTHON)}$", makefile, re.M)
    assert functions.RUNTIME.name == f"python{functions.LAMBDA_PYTHON}"
    files = assets.lambda_dependency_files()
    assert "aws_lambda_powertools/__init__.py" in files and "aws_xray_sdk/__init__.py" in files
    wrapt = [n for n in files if n.startswith("wrapt/") and n.endswith(".so")]
    assert wrapt and all(f"cpython-{functions.LAMBDA_PYTHON.replace('.', '')}-x86_64" in n for n in wrapt), wrapt
    staged = assets.stage_lambda("drift")
    assert (staged / "aws_lambda_powertools" / "__init__.py").is_file() and (staged / "handler.py").is_file()


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def test_one_import_form_no_module_falls_back_to_a_flat_layout() -> None:
    """training_src ships as the ``training_src`` package everywhere (the Lambda packages, the training
    sourcedir, the model's code/), so no module tries a second, flat import of the project's own code when
    the first fails (``try: from . import x / except ImportError: import x``)."""
    own = {p.stem for p in (REPO / "training_src").iterdir()
           if p.suffix == ".py" or (p / "__init__.py").is_file()} | {"training_src"}
    found = []
    for path in sorted([*REPO.glob("training_src/**/*.py"), *REPO.glob("lambda/*/handler.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Try) or not any(_catches_import_error(h) for h in node.handlers):
                continue
            for stmt in ast.walk(ast.Module(body=[*node.body, *[s for h in node.handlers for s in h.body]],
                                            type_ignores=[])):
                roots = [a.name.split(".")[0] for a in stmt.names] if isinstance(stmt, ast.Import) else \
                    [(stmt.module or "").split(".")[0]] if isinstance(stmt, ast.ImportFrom) and not stmt.level else \
                    ["."] if isinstance(stmt, ast.ImportFrom) else []
                if any(r == "." or r in own for r in roots):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, f"flat-layout import fallbacks: {sorted(set(found))}"
