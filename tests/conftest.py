"""Shared fixtures: the real data directory (``PREDMAINT_DATA_DIR``, as CI sets it, or ``./data`` from
`predmaint data`), FD001 preprocessed once and a small real model trained once by train.py, for every test
package; the guard that a native-code test never skips where a C compiler is installed; and the guard that
in CI (``CI`` set, as .ci/run does) a test whose environment is missing fails instead of skipping."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: the Node.js package.json pins (``npm ci``): jsii (aws_cdk in the tests) and the CDK CLI run on it,
#: as under make, also when pytest is started directly
NODE_BIN = REPO / "node_modules" / ".bin"
if (NODE_BIN / "node").exists() and str(NODE_BIN) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([str(NODE_BIN), os.environ.get("PATH", "")])

#: skip reasons of tests that need native code (training_src/*.c built by the C compiler)
NATIVE_SKIP_REASON = re.compile(r"\bC compiler\b|\bcompil(e|er|ation)\b", re.IGNORECASE)
#: skip reasons of tests whose environment an install step builds (a `make ...` target, `npm ci`) or CI
#: provides (the data directory): in CI (``CI`` set, as .ci/run does) such a skip fails
ENVIRONMENT_SKIP_REASON = re.compile(r"`make [\w-]+`|\bmake (setup|test)\b|\bnpm ci\b|\bPREDMAINT_DATA_DIR\b")


def _in_ci() -> bool:
    """True under CI: ``CI`` set to anything but empty, 0 or false (GitHub Actions and .ci/run set true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "native: needs the C compiler; a skip fails where cc/gcc is on PATH")
    config.addinivalue_line("markers", "environment: needs an environment `make test` builds; a skip fails in CI")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--dist loadgroup`` sends the tests of one ``xdist_group`` to one worker by a ``@group`` suffix
    on their node ids. pytest-xdist 3.8 writes it to ``item._nodeid``, which pytest 9 no longer reads
    (node ids come from ``item._id``), so every group was silently spread over the workers (a module's
    shared run or server built once per worker). Add the suffix where pytest 9 reads it."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import NodeId  # pytest >= 9

    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """A native-code test that skips on a machine WITH a C compiler fails instead: the compiled code
    failed to build or load, and a skip would hide it. A test is native-code if it is marked
    ``native`` or its skip reason mentions the compiler ("no C compiler here"), wherever it lives."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if _in_ci() and (item.get_closest_marker("environment") or ENVIRONMENT_SKIP_REASON.search(reason)):
        report.outcome = "failed"
        report.longrepr = (f"skipped in CI ({reason.removeprefix('Skipped: ')}): CI builds every environment "
                           f"(`make test`), so a missing one means a broken install step; a skip would hide it")
        return
    if not (item.get_closest_marker("native") or NATIVE_SKIP_REASON.search(reason)):
        return
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler:
        report.outcome = "failed"
        report.longrepr = (f"native-code test skipped ({reason.removeprefix('Skipped: ')}) although a C compiler "
                           f"is on PATH ({compiler}): the build or load failed; a skip would hide it")


def _data_dir() -> Path:
    env = os.environ.get("PREDMAINT_DATA_DIR")
    for candidate in (env, REPO / "data"):
        if candidate and (Path(candidate) / "cmapss").is_dir():
            return Path(candidate)
    raise RuntimeError("no data: set PREDMAINT_DATA_DIR to a folder holding cmapss/ and ai4i2020/ "
                       "(run `predmaint data` to download them)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _data_dir()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fd001(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """FD001 through preprocess (frames, spec, manifest) and written to disk like SageMaker would."""
    from training_src import preprocess
    from training_src.profiles import load_profile

    profile = load_profile("cmapss", "FD001")
    frames, spec, manifest = preprocess.build_datasets(profile, data_dir, seed=0)
    out = tmp_path_factory.mktemp("fd001")
    preprocess.write_outputs(out, frames, spec, manifest)
    return {"profile": profile, "frames": frames, "spec": spec, "manifest": manifest, "out": out}


def train_subprocess(channels: Path, model_dir: Path, *hp: str) -> subprocess.CompletedProcess:
    """Run train.py exactly as SageMaker does: SM_* env vars and --name value hyperparameters."""
    env = {**os.environ, "SM_CHANNEL_TRAIN": str(channels / "train"),
           "SM_CHANNEL_VALIDATION": str(channels / "validation"), "SM_MODEL_DIR": str(model_dir),
           "SM_OUTPUT_DATA_DIR": str(model_dir.parent / "output"), "SM_NUM_CPUS": "1"}
    return subprocess.run([sys.executable, str(REPO / "training_src" / "train.py"), *hp], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def fd001_refit(fd001: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FD001 final model as the pipeline makes it, with few rounds: refit on train+validation, so the
    artifact carries its interval calibrations."""
    model_dir = tmp_path_factory.mktemp("fd001-refit") / "model"
    proc = train_subprocess(fd001["out"], model_dir, "--algorithm", "xgboost", "--num_round", "60",
                            "--max_depth", "4", "--eta", "0.1", "--fit_on", "train+validation")
    assert proc.returncode == 0, proc.stderr
    return model_dir


@pytest.fixture(scope="session")
def fd001_units(data_dir: Path, fd001: dict) -> dict[int, list[dict]]:
    """FD001's test engines as request readings: unit -> its readings (dicts without the unit), in file order."""
    from training_src.dataio import read_table, resolve_file

    p = fd001["profile"]
    test = read_table(resolve_file(data_dir, p.file("test")), p)
    return {int(u): g.drop(columns=["unit"]).to_dict("records") for u, g in test.groupby("unit")}


@pytest.fixture(scope="session")
def fd001_model(fd001: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("fd001-model") / "model"
    proc = train_subprocess(fd001["out"], model_dir, "--algorithm", "xgboost", "--num_round", "60",
                            "--max_depth", "4", "--eta", "0.1")
    assert proc.returncode == 0, proc.stderr
    return model_dir


@pytest.fixture(scope="session")
def fd002_model(data_dir, tmp_path_factory) -> Path:
    """A small calibrated FD002 model (six operating conditions), made as the pipeline makes it."""
    from training_src import preprocess
    from training_src.profiles import load_profile

    frames, spec, manifest = preprocess.build_datasets(load_profile("cmapss", "FD002"), data_dir, seed=0)
    out = tmp_path_factory.mktemp("fd002")
    preprocess.write_outputs(out, frames, spec, manifest)
    proc = train_subprocess(out, out / "model", "--algorithm", "xgboost", "--num_round", "30", "--max_depth", "4",
                            "--eta", "0.2", "--fit_on", "train+validation")
    assert proc.returncode == 0, proc.stderr
    return out / "model"


@pytest.fixture(scope="session")
def fd002_units(data_dir) -> dict[int, list[dict]]:
    """FD002's test engines as request readings: unit -> its readings."""
    from training_src.dataio import read_table, resolve_file
    from training_src.profiles import load_profile

    p = load_profile("cmapss", "FD002")
    test = read_table(resolve_file(data_dir, p.file("test")), p)
    return {int(u): g.drop(columns=["unit"]).to_dict("records") for u, g in test.groupby("unit")}
