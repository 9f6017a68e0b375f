"""The two Lambda handlers run once against moto with the deployment's own names (their environment
from the synthesized template), every boto3 call they make recorded: the IAM check derives their
needs from the calls, the API-shape check validates the calls."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from predmaint.modules import load_module
from tests.infra.contracts import iam
from tests.infra.contracts.iam import function_env
from tests.infra.contracts.shapes import recording_calls

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def stream_synth(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The app synthesized with the stream enabled (``predmaint.stream.enabled``): the endpoint stack
    gets the stream construct, the pipeline its rebuild step and role; the quality check writes the
    fleet's failed lives to the data bucket (``predmaint.quality.fleet_training_data``)."""
    from tests.infra.conftest import CDK_CONTEXT, synth_app

    return synth_app(tmp_path_factory.mktemp("cdk.out-stream"), {**CDK_CONTEXT, "predmaint.stream.enabled": "true",
                                                                  "predmaint.quality.fleet_training_data": "true"})


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "fn", 256, "req-1"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:fn"


@pytest.fixture(scope="session")
def lambda_run(synth: Any, resolver: iam.Resolver, data_dir: Path) -> dict[str, Any]:
    """prepare (plan, refit) and promote (promote, confirm, reject) on the real FD001 files in moto.

    Returns the plan, refit plan, promotion outcome, the calls each handler made, and the JSON
    objects the run left in the artifacts bucket (``objects``: s3 URI -> document)."""
    import boto3
    from moto import mock_aws

    c, t = synth.built.config, synth.built.training
    prepare_env = function_env(resolver, synth, t.prepare)
    promote_env = function_env(resolver, synth, t.promote)
    prep = load_module(REPO / "lambda/prepare/handler.py", "contract_prepare_handler")
    promo = load_module(REPO / "lambda/promote/handler.py", "contract_promote_handler")
    env = {**prepare_env, **promote_env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": c.region, "AWS_REGION": c.region, "POWERTOOLS_TRACE_DISABLED": "true",
           "POWERTOOLS_METRICS_NAMESPACE": "contract"}
    data_bucket, artifacts_bucket = prepare_env["DATA_BUCKET"], prepare_env["ARTIFACTS_BUCKET"]
    with mock.patch.dict(os.environ, env), mock_aws():
        s3 = boto3.client("s3", region_name=c.region)
        for bucket in (data_bucket, artifacts_bucket):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": c.region})
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        for f in sorted((data_dir / "cmapss").glob("*FD001.txt.gz")):
            s3.upload_file(str(f), data_bucket, f"raw/cmapss/{f.name}")
        # no model package group yet: the promote function creates it on first use

        event = {"dataset": c.dataset, "profile": c.profile, "subset": c.subset,
                 "execution": {"name": "exec-1", "start_time": "2026-11-30T12:00:00Z"}}
        with recording_calls() as prepare_calls:
            plan = prep.handler({"action": "plan", **event}, Context())
            best = {"TrainingJobDefinitionName": "xgboost",
                    "TrainingJobName": f"{plan['jobs']['tuning']}-003-a1b2c3d4",
                    "TunedHyperParameters": {"eta": "0.1", "max_depth": "5"}}
            refit = prep.handler({"action": "refit", "plan": plan, "best_training_job": best}, Context())
        model = f"{plan['s3']['model_output']}{plan['jobs']['refit']}/output/model.tar.gz"
        s3.put_object(Bucket=artifacts_bucket, Key=model.split("/", 3)[3], Body=b"model")
        report = {"regression_metrics": {"rmse": {"value": 12.0}}, "nasa_score": 250.0, "improvement_pct": 60.0,
                  "test_fingerprint": "fp"}
        s3.put_object(Bucket=artifacts_bucket, Key=plan["s3"]["evaluation_report"].split("/", 3)[3],
                      Body=json.dumps(report).encode())
        with recording_calls() as promote_calls:
            promotion = promo.handler({"action": "promote", "run_id": plan["run_id"], "task": plan["task"],
                                       "profile": plan["profile"], "subset": plan["subset"],
                                       "evaluation_report_uri": plan["s3"]["evaluation_report"],
                                       "model_data_url": model}, Context())
            decision = {"run_id": plan["run_id"], "model_package_arn": promotion["model_package_arn"]}
            promo.handler({"action": "confirm", **decision}, Context())
            promo.handler({"action": "reject", "reason": "rolled back", **decision}, Context())
        objects = {}
        for item in s3.list_objects_v2(Bucket=artifacts_bucket).get("Contents", []):
            if item["Key"].endswith(".json"):
                body = s3.get_object(Bucket=artifacts_bucket, Key=item["Key"])["Body"].read()
                objects[f"s3://{artifacts_bucket}/{item['Key']}"] = json.loads(body)
    return {"event": event, "plan": plan, "best": best, "refit": refit, "model": model, "promotion": promotion,
            "prepare_calls": prepare_calls, "promote_calls": promote_calls, "objects": objects}

