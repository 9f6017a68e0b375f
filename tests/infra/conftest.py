"""One synthesis of the whole CDK app per test session, with the context from cdk.json.

All infra tests share the ``xdist_group("infra")`` so that, under ``--dist loadgroup``, they run
in one worker and the app is synthesized once (a jsii process costs seconds).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CDK_CONTEXT: dict[str, Any] = json.loads((REPO / "cdk.json").read_text())["context"]
HASH_RE = re.compile(r"[0-9a-f]{64}")

os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.xdist_group("infra"))


def normalise(template: dict[str, Any]) -> dict[str, Any]:
    """Template without asset hashes and bootstrap-version noise (snapshots change only with infra)."""
    doc = json.loads(HASH_RE.sub("<asset-hash>", json.dumps(template)))
    doc.get("Parameters", {}).pop("BootstrapVersion", None)
    doc.get("Rules", {}).pop("CheckBootstrapVersion", None)
    for key in ("Parameters", "Rules"):
        if key in doc and not doc[key]:
            del doc[key]
    return doc


@dataclass
class Synth:
    built: Any  # stacks.app.PredMaintApp
    outdir: Path
    templates: dict[str, dict[str, Any]]  # stack name -> template

    def template(self, suffix: str) -> dict[str, Any]:
        (name,) = [n for n in self.templates if n.endswith(suffix)]
        return self.templates[name]

    def resources(self, suffix: str, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template(suffix)["Resources"].items() if v["Type"] == type_}

    def all_resources(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(stack, lid, res) for stack, t in self.templates.items() for lid, res in t["Resources"].items()]


def synth_app(outdir: Path, context: dict[str, Any] | None = None) -> Synth:
    import aws_cdk as cdk

    from stacks.app import build

    app = cdk.App(context=context if context is not None else CDK_CONTEXT, outdir=str(outdir))
    built = build(app)
    assembly = app.synth()
    templates = {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    return Synth(built, outdir, templates)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synth_app(tmp_path_factory.mktemp("cdk.out"))
