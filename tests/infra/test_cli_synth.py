"""The pinned CDK CLI synthesizes the app offline, to the same templates as the test session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.infra.conftest import REPO, normalise


@pytest.mark.skipif(shutil.which("npx") is None or not (REPO / "node_modules" / "aws-cdk").is_dir(),
                    reason="needs node and `npm ci` (make setup)")
def test_npx_cdk_synth_runs_offline_and_matches_the_session(synth, tmp_path):
    # no credentials: the app must not need any (no lookups, no fixed account)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("CDK_")}
    env.update({"CDK_DISABLE_CLI_TELEMETRY": "true", "AWS_EC2_METADATA_DISABLED": "true"})
    proc = subprocess.run(["npx", "--no-install", "cdk", "synth", "--no-notices", "-q", "-o", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name, template in synth.templates.items():
        cli = json.loads((tmp_path / f"{name}.template.json").read_text())
        assert _without_cli_metadata(normalise(cli)) == _without_cli_metadata(normalise(template)), \
            f"{name}: cdk synth differs from the tests' synth"


def _without_cli_metadata(template: dict) -> dict:
    """The CLI adds construct-path metadata and the CDKMetadata version-reporting resource."""
    template = json.loads(json.dumps(template))
    resources = template["Resources"]
    resources.pop("CDKMetadata", None)
    for res in resources.values():
        res.pop("Metadata", None)
    template.get("Conditions", {}).pop("CDKMetadataAvailable", None)
    if "Conditions" in template and not template["Conditions"]:
        del template["Conditions"]
    return template
