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
from unittest import mock

import pytest

from predmaint.modules import load_module

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


class _LambdaContext:
    function_name, memory_limit_in_mb, aws_request_id = "fn", 256, "req-1"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:fn"


@pytest.fixture(scope="session")
def resolver(synth: Any) -> Any:
    """Every intrinsic of the synthesized templates, resolved in the test account (contracts/iam.py)."""
    from tests.infra.contracts import iam

    return iam.Resolver(synth.templates, synth.built.config.region)


@pytest.fixture(scope="session")
def drift_run(synth: Any, resolver: Any) -> dict[str, Any]:
    """The drift schedule fires once after a champion was recorded and the endpoint captured traffic: the
    deployed starter function (its environment from the template) runs on the schedule's own input in
    moto, every boto3 call recorded. Returns the event, the answer, the calls and the request sent."""
    import aws_cdk as cdk
    import boto3
    from moto import mock_aws

    from tests.infra.contracts import iam
    from tests.infra.contracts.iam import function_env
    from tests.infra.contracts.needs import drift_schedule_event
    from tests.infra.contracts.shapes import recording_calls

    c, drift = synth.built.config, synth.built.monitoring.drift
    stack = cdk.Stack.of(drift.schedule)
    schedule = synth.templates[stack.stack_name]["Resources"][stack.get_logical_id(drift.schedule)]
    event = drift_schedule_event(schedule, lambda v: resolver.resolve(stack.stack_name, v))
    env = {**function_env(resolver, synth, drift.starter), "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": c.region, "AWS_REGION": c.region,
           "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "contract"}
    starter = load_module(REPO / "lambda/drift/handler.py", "contract_drift_handler")
    artifacts = c.bucket_name("artifacts", iam.ACCOUNT)
    champion = f"s3://{artifacts}/models/20261130-120000-f42b/model.tar.gz"
    with mock.patch.dict(os.environ, env), mock_aws():
        s3 = boto3.client("s3", region_name=c.region)
        s3.create_bucket(Bucket=artifacts, CreateBucketConfiguration={"LocationConstraint": c.region})
        s3.put_object(Bucket=artifacts, Key=f"data-capture/{c.endpoint.name}/{c.endpoint.variant_name}/2026/11/30/"
                                            "12/00-00-000-0a1b.jsonl", Body=b"{}\n")
        boto3.client("ssm", region_name=c.region).put_parameter(Name=c.champion_parameter, Value=champion,
                                                                 Type="String")
        with recording_calls() as calls:
            answer = starter.handler(event, _LambdaContext())
    (sent,) = [call.params for call in calls if call.operation == "CreateProcessingJob"]
    return {"event": event, "answer": answer, "calls": calls, "request": sent, "champion": champion}
