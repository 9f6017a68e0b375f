"""The container/xgboost pin, and the deterministic staging of code assets."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from stacks import assets
from stacks.images import XGBOOST_CONTAINER_VERSION, ecr_repository_arn, xgboost_image_uri, xgboost_version
from tests.infra.conftest import REPO


def test_local_xgboost_and_container_versions_are_pinned_together():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M))
    local = pins["xgboost-cpu"]
    assert ".".join(local.split(".")[:2]) == xgboost_version(), (
        f"requirements.txt pins xgboost-cpu=={local} but the SageMaker container is {XGBOOST_CONTAINER_VERSION}")


def test_the_cdk_runs_on_the_pinned_supported_node():
    """The CDK CLI and jsii run on the Node.js package.json pins (node_modules/.bin first on PATH, as the
    Makefile and tests/conftest.py put it), a release the CDK supports; nothing silences its
    end-of-life warning."""
    import json
    import shutil

    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"]["node"]
    assert int(pinned.split(".")[0]) in (22, 24), f"package.json pins node {pinned}: the CDK supports 22 and 24"
    node = shutil.which("node")
    assert node and Path(node).parent == REPO / "node_modules" / ".bin", f"jsii would run {node}"
    assert subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() == f"v{pinned}"
    assert json.loads((REPO / "package.json").read_text())["engines"]["node"] == f">={pinned.split('.')[0]}"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    silenced = [f for f in tracked if Path(REPO / f).is_file() and f != Path(__file__).relative_to(REPO).as_posix()
                and "JSII_SILENCE_WARNING_END_OF_LIFE" in Path(REPO / f).read_text(errors="replace")]
    assert silenced == []


def test_image_uri_resolves_offline_per_region():
    uri = xgboost_image_uri("us-east-1")
    assert uri.endswith(f"sagemaker-xgboost:{XGBOOST_CONTAINER_VERSION}") and ".us-east-1." in uri
    assert ecr_repository_arn(uri).startswith("arn:aws:ecr:us-east-1:") and uri.split(".")[0] in ecr_repository_arn(uri)


def test_source_tarball_is_reproducible_the_package_and_its_entry_module_without_links():
    files = assets.training_source_files()
    first, second = assets.source_tarball_bytes(files), assets.source_tarball_bytes(files)
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
        members = tar.getmembers()
    assert {"train.py", "training_src/train.py", "training_src/profiles.py", "training_src/promotion.py",
            "training_src/profiles/cmapss.json", "training_src/predmaint_serving/codec.py",
            "training_src/features/__init__.py", "pyproject.toml"} <= set(names)
    assert {n.split("/")[0] for n in names} == {"train.py", "training_src", "pyproject.toml"}
    # no links: the container pip-installs this directory, and a link loop breaks that install
    assert not any(m.issym() or m.islnk() for m in members)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    staged = assets.stage_training_source()
    assert staged == assets.stage_training_source(), "content-addressed: same content, same path"


def test_lambda_bundles_carry_the_shared_modules_as_the_training_src_package():
    for name, module in (("prepare", "search_space"), ("promote", "promotion")):
        staged = assets.stage_lambda(name)
        assert (staged / "handler.py").is_file() and (staged / "training_src" / "profiles" / "cmapss.json").is_file()
        assert not (staged / "test_handler.py").exists() and not (staged / "requirements.txt").exists()
        # as in Lambda: the staged folder first on sys.path; its training_src, not the repository's, is imported
        code = ("import sys; sys.path.insert(0, sys.argv[1]); "
                f"import handler; print(handler.{module}.__file__)")
        out = subprocess.run([sys.executable, "-c", code, str(staged)], capture_output=True, text=True,
                             env={"POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().startswith(str(staged))
