"""Local model registry: versions, champion/challenger pointer, idempotency, atomicity, safe extraction."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from predmaint import registry as reg
from predmaint.errors import CorruptModelError, UnknownModelError
from predmaint.registry import Registry


def fake_artifact(path: Path, payload: bytes = b"booster") -> Path:
    """A minimal but complete model.tar.gz (files at the archive root)."""
    files = {"xgboost-model": payload, "feature_spec.json": b"{}", "model_meta.json": b"{}",
             "code/inference.py": b"def model_fn(d): ...\ndef handle(*a): ...\n"}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def ev(rmse: float) -> dict:
    return {"regression_metrics": {"rmse": {"value": rmse}, "mae": {"value": rmse * 0.8}}, "nasa_score": 300.0,
            "test_fingerprint": "fp"}


def snapshot(home: Path) -> dict[str, bytes]:
    """Every file of the registry except lock/cache, for before/after equality."""
    root = home / "registry"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock" and "cache" not in p.parts}


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return fake_artifact(tmp_path / "model.tar.gz")


def register(r: Registry, artifact: Path, run_id: str, rmse: float, approved: bool, reason: str = "r"):
    return r.register(artifact=artifact, evaluation=ev(rmse), approved=approved, reason=reason, run_id=run_id,
                      lineage={"profile": "cmapss", "dataset_files": {"train": "sha"}, "code_commit": "abc",
                               "hyperparameters": {"eta": 0.1}})


def test_empty_registry(tmp_path: Path) -> None:
    r = Registry(tmp_path)
    assert r.list_packages() == [] and r.champion() is None
    with pytest.raises(UnknownModelError, match="registry is empty"):
        r.get(1)
    with pytest.raises(UnknownModelError, match="no champion"):
        r.resolve(None)


def test_champion_challenger_pointer(tmp_path: Path, artifact: Path) -> None:
    r = Registry(tmp_path)
    p1 = register(r, artifact, "run-a", 20.0, True, "no champion yet")
    assert (p1.version, p1.status, r.champion().version) == (1, "Approved", 1)
    p2 = register(r, artifact, "run-b", 25.0, False, "rmse 25 does not beat champion's 20")
    assert (p2.version, p2.status) == (2, "Rejected")
    assert r.champion().version == 1, "a rejected challenger must not move the champion"
    p3 = register(r, artifact, "run-c", 15.0, True, "rmse 15 beats champion's 20")
    assert r.champion().version == 3
    assert [p.version for p in r.list_packages()] == [3, 2, 1]
    got = r.get(2)
    assert got.reason.startswith("rmse 25") and got.metrics["rmse"] == 25.0 and got.metrics["nasa_score"] == 300.0
    assert got.lineage["code_commit"] == "abc" and got.run_id == "run-b" and got.created_at.endswith("Z")
    assert got.artifact.is_file() and got.artifact.read_bytes() == artifact.read_bytes()
    assert p3.primary_value == 15.0
    with pytest.raises(UnknownModelError, match="known versions: 1, 2, 3"):
        r.get(9)
    with pytest.raises(UnknownModelError, match="whole number"):
        r.get("latest")


def test_register_is_idempotent_per_run_id(tmp_path: Path, artifact: Path) -> None:
    r = Registry(tmp_path)
    first = register(r, artifact, "run-a", 20.0, True)
    register(r, artifact, "run-b", 10.0, True)
    again = register(r, artifact, "run-a", 5.0, True)  # a retried promotion of the same run
    assert again == first
    assert len(r.list_packages()) == 2 and r.champion().version == 2


def _crash_on_replace(monkeypatch: pytest.MonkeyPatch, which: str) -> None:
    real = os.replace

    def fake(src, dst, *a, **k):
        if Path(dst).name == which or (which == "package" and Path(dst).parent.name == "packages"):
            raise OSError(28, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(reg.os, "replace", fake)


@pytest.mark.parametrize("which", ["package", "registry.json"])
def test_failure_mid_register_leaves_registry_unchanged(tmp_path: Path, artifact: Path, which: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    r = Registry(tmp_path)
    register(r, artifact, "run-a", 20.0, True)
    before = snapshot(tmp_path)
    with monkeypatch.context() as m:
        _crash_on_replace(m, which)
        with pytest.raises(OSError, match="No space left on device"):
            register(r, artifact, "run-b", 10.0, True)
    assert [p.version for p in r.list_packages()] == [1] and r.champion().version == 1
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(".staging")}
    assert after == before
    # and the registry still works: the next registration gets version 2
    assert register(r, artifact, "run-b", 10.0, True).version == 2 and r.champion().version == 2


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from predmaint import registry as reg
    which = sys.argv[3]
    real = os.replace
    def fake(src, dst, *a, **k):
        d = Path(dst)
        if d.name == which or (which == "package" and d.parent.name == "packages"):
            os.kill(os.getpid(), signal.SIGKILL)  # a crash: no cleanup, no finally blocks
        return real(src, dst, *a, **k)
    reg.os.replace = fake
    reg.Registry(Path(sys.argv[1])).register(artifact=Path(sys.argv[2]), evaluation={}, lineage={},
                                             approved=True, reason="x", run_id="killed")
""")


@pytest.mark.parametrize("which", ["package", "registry.json"])
def test_killed_process_mid_register_leaves_registry_unchanged(tmp_path: Path, artifact: Path, which: str) -> None:
    r = Registry(tmp_path)
    register(r, artifact, "run-a", 20.0, True)
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tmp_path), str(artifact), which],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert r.find_run("killed") is None and r.champion().version == 1
    assert json.loads((tmp_path / "registry" / "registry.json").read_bytes()) == json.loads(before["registry.json"])
    p = register(r, artifact, "run-b", 10.0, True)
    assert p.version == 2 and r.champion().version == 2
    assert sorted(d.name for d in (tmp_path / "registry" / "packages").iterdir()) == ["1", "2"]


REGISTER_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from predmaint.registry import Registry
    for run_id in sys.argv[3:]:
        Registry(Path(sys.argv[1])).register(artifact=Path(sys.argv[2]), evaluation={}, lineage={},
                                             approved=False, reason="x", run_id=run_id)
""")


def test_concurrent_registrations_get_distinct_versions(tmp_path: Path, artifact: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER_SCRIPT, str(tmp_path), str(artifact),
                               f"run-{i}a", f"run-{i}b", f"run-{i}c"]) for i in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    packages = Registry(tmp_path).list_packages()
    assert sorted(p.version for p in packages) == list(range(1, 10))
    assert len({p.run_id for p in packages}) == 9


def test_model_dir_extracts_once_and_verifies(tmp_path: Path, artifact: Path) -> None:
    r = Registry(tmp_path)
    register(r, artifact, "run-a", 20.0, True)
    d = r.model_dir(1)
    assert (d / "xgboost-model").read_bytes() == b"booster" and (d / "code" / "inference.py").is_file()
    mtime = (d / "xgboost-model").stat().st_mtime_ns
    assert r.model_dir("1") == d and (d / "xgboost-model").stat().st_mtime_ns == mtime  # cached
    # a damaged artifact is refused (after the cache is gone)
    import shutil

    shutil.rmtree(d)
    r.get(1).artifact.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(CorruptModelError, match="SHA-256"):
        r.model_dir(1)


def _evil_tar(path: Path, name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> Path:
    fake_artifact(path)
    with tarfile.open(path, "r:gz") as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
    with tarfile.open(path, "w:gz") as tar:
        for m, data in members:
            tar.addfile(m, io.BytesIO(data))
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        info.size = 0 if kind != tarfile.REGTYPE else 4
        tar.addfile(info, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
    return path


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make,match", [
    (lambda p: _evil_tar(p, "../../escape.txt"), "unsafe path"),
    (lambda p: _evil_tar(p, "/etc/evil"), "unsafe path"),
    (lambda p: _evil_tar(p, "link", tarfile.SYMTYPE, "/etc/passwd"), "not a regular file"),
    (lambda p: _written(p, b"this is not a tarball"), "not a valid model.tar.gz"),
    (lambda p: _written(p, fake_artifact(p).read_bytes()[:60]), "not a valid model.tar.gz"),
])
def test_unsafe_or_corrupt_archives_are_refused(tmp_path: Path, make, match: str) -> None:
    bad = make(tmp_path / "bad.tar.gz")
    r = Registry(tmp_path / "home")
    with pytest.raises(CorruptModelError, match=match):  # refused at registration, nothing written
        r.register(artifact=bad, evaluation={}, lineage={}, approved=True, reason="x", run_id="bad")
    assert r.list_packages() == [] and r.champion() is None
    assert not (tmp_path / "home" / "registry" / "packages").exists()
    # extraction (the second line of defence) refuses it too, and nothing escapes
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(CorruptModelError, match=match):
        reg.extract_model_archive(bad, dest)
    assert not (tmp_path / "escape.txt").exists()


def test_archive_missing_required_files(tmp_path: Path) -> None:
    p = tmp_path / "m.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        info = tarfile.TarInfo("feature_spec.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(CorruptModelError, match=r"lacks code/inference.py, xgboost-model or linear-model.json"):
        Registry(tmp_path / "home").register(artifact=p, evaluation={}, lineage={}, approved=True, reason="x",
                                             run_id="r")


def test_sagemaker_style_archive_with_dot_prefix_is_accepted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    d = fake_artifact(tmp_path / "a.tar.gz")
    with tarfile.open(d) as tar:
        tar.extractall(src, filter="data")
    dotted = tmp_path / "dotted.tar.gz"
    subprocess.run(["tar", "-czf", str(dotted), "-C", str(src), "."], check=True)
    r = Registry(tmp_path / "home")
    r.register(artifact=dotted, evaluation={}, lineage={}, approved=True, reason="x", run_id="r")
    assert (r.model_dir(1) / "code" / "inference.py").is_file()


def test_real_model_round_trip(tmp_path: Path, model_tar: Path) -> None:
    r = Registry(tmp_path)
    r.register(artifact=model_tar, evaluation=ev(20.0), lineage={}, approved=True, reason="x", run_id="r")
    d = r.model_dir(1)
    for f in ("xgboost-model", "feature_spec.json", "model_meta.json", "code/inference.py",
              "code/training_src/features/__init__.py"):
        assert (d / f).is_file(), f
