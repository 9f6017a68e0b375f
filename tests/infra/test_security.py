"""Security properties of the synthesized templates (the session ``synth`` fixture: one synthesis).

No IAM statement allows a ``*`` action; every bucket is encrypted (KMS with the project key; the access-log
bucket SSE-S3, the only encryption S3 server access logging can deliver to), TLS-only, public access
blocked and versioned; the key rotates; SageMaker processing jobs run network-isolated with
inter-container traffic encryption, training jobs with inter-container traffic encryption (script mode
downloads its code from S3 inside the container, so isolation is not set there: docs/reliability.md),
every job volume, output and the endpoint encrypted with the key; hosted models network-isolated;
logs and notifications encrypted. The second scanner (checkov) is in tests/infra/test_checkov.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

KEY_REF_MARKERS = ("EncryptionKey", "KeyCE96", "Encryption")  # logical id / export of the project key


def _statements(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    p = resource.get("Properties", {})
    docs = [p.get("PolicyDocument"), p.get("KeyPolicy")] + [pol.get("PolicyDocument") for pol in p.get("Policies", [])]
    for doc in docs:
        if doc:
            yield from doc["Statement"]


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _refers_to_project_key(value: Any) -> bool:
    text = json.dumps(value)
    return any(m in text for m in KEY_REF_MARKERS)


def test_no_iam_statement_allows_a_wildcard_action(synth) -> None:
    offenders = []
    for stack, lid, res in synth.all_resources():
        for st in _statements(res):
            actions = _as_list(st.get("Action", [])) + _as_list(st.get("NotAction", []))
            if any(isinstance(a, str) and "*" in a for a in actions):
                if st["Effect"] == "Deny":
                    # the only Denies with a wildcard are the buckets' TLS guards (no plain HTTP, TLS >= 1.2)
                    assert st["Condition"] in ({"Bool": {"aws:SecureTransport": "false"}},
                                               {"NumericLessThan": {"s3:TlsVersion": 1.2}}), (lid, st)
                    continue
                offenders.append((stack, lid, st.get("Action")))
            assert "NotAction" not in st or st["Effect"] == "Deny", (lid, st)
    assert offenders == []


def test_every_bucket_encrypted_tls_only_private_and_versioned(synth) -> None:
    buckets = {lid: res for _, lid, res in synth.all_resources() if res["Type"] == "AWS::S3::Bucket"}
    policies = {json.dumps(res["Properties"]["Bucket"]): res for _, _, res in synth.all_resources()
                if res["Type"] == "AWS::S3::BucketPolicy"}
    assert len(buckets) == 3
    for lid, res in buckets.items():
        p = res["Properties"]
        rule = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        if "AccessLogs" in lid:  # S3 server access logs cannot be delivered to an SSE-KMS bucket
            assert rule == {"SSEAlgorithm": "AES256"}
        else:
            assert rule["SSEAlgorithm"] == "aws:kms" and _refers_to_project_key(rule["KMSMasterKeyID"]), lid
        assert p["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}
        policy = policies[json.dumps({"Ref": lid})]["Properties"]["PolicyDocument"]["Statement"]
        assert any(st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for st in policy), f"{lid} is not TLS-only"
        assert any(st["Effect"] == "Deny" and "s3:TlsVersion" in json.dumps(st.get("Condition")) for st in policy)


def test_the_key_rotates(synth) -> None:
    keys = [res for _, _, res in synth.all_resources() if res["Type"] == "AWS::KMS::Key"]
    assert len(keys) == 1 and keys[0]["Properties"]["EnableKeyRotation"] is True


def _state_machine_definition(synth) -> dict[str, Any]:
    (sm,) = synth.resources("Training", "AWS::StepFunctions::StateMachine").values()
    definition = sm["Properties"]["DefinitionString"]
    if isinstance(definition, dict):  # Fn::Join of text and tokens; tokens sit inside JSON strings
        definition = "".join(p if isinstance(p, str) else "TOKEN" for p in definition["Fn::Join"][1])
    return json.loads(definition)


def _tasks(definition: dict[str, Any], resource_suffix: str) -> list[dict[str, Any]]:
    out = []

    def walk(states: dict[str, Any]) -> None:
        for st in states.values():
            if str(st.get("Resource", "")).endswith(resource_suffix):
                out.append(st)
            for branch in st.get("Branches", []):
                walk(branch["States"])
            if "Iterator" in st:
                walk(st["Iterator"]["States"])

    walk(definition["States"])
    return out


@pytest.fixture(scope="module")
def definition(synth) -> dict[str, Any]:
    return _state_machine_definition(synth)


def test_processing_jobs_isolated_encrypted_in_transit_and_at_rest(definition) -> None:
    jobs = _tasks(definition, "createProcessingJob.sync")
    assert len(jobs) == 2  # preprocess and evaluate
    for job in jobs:
        p = job["Parameters"]
        assert p["NetworkConfig"]["EnableNetworkIsolation"] is True
        assert p["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True
        assert p["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"]
        assert p["ProcessingOutputConfig"]["KmsKeyId"]


def test_training_jobs_encrypt_traffic_volumes_and_output(definition) -> None:
    (refit,) = _tasks(definition, "createTrainingJob.sync")
    (tuning,) = _tasks(definition, "createHyperParameterTuningJob.sync")
    jobs = [refit["Parameters"], *tuning["Parameters"]["TrainingJobDefinitions"]]
    assert len(jobs) >= 2
    for job in jobs:
        assert job["EnableInterContainerTrafficEncryption"] is True
        assert job["ResourceConfig"]["VolumeKmsKeyId"]
        assert job["OutputDataConfig"]["KmsKeyId"]


def test_models_isolated_and_endpoints_encrypted(synth, definition) -> None:
    (create_model,) = _tasks(definition, "sagemaker:createModel")
    assert create_model["Parameters"]["EnableNetworkIsolation"] is True
    (create_config,) = _tasks(definition, "sagemaker:createEndpointConfig")
    assert create_config["Parameters"]["KmsKeyId"] and create_config["Parameters"]["DataCaptureConfig"]["KmsKeyId"]
    for model in synth.resources("Endpoint", "AWS::SageMaker::Model").values():
        assert model["Properties"]["EnableNetworkIsolation"] is True
    for config in synth.resources("Endpoint", "AWS::SageMaker::EndpointConfig").values():
        p = config["Properties"]
        assert _refers_to_project_key(p["KmsKeyId"]) and _refers_to_project_key(p["DataCaptureConfig"]["KmsKeyId"])


def test_logs_and_notifications_encrypted(synth) -> None:
    logs = [res for _, _, res in synth.all_resources() if res["Type"] == "AWS::Logs::LogGroup"]
    assert logs
    for res in logs:
        assert _refers_to_project_key(res["Properties"]["KmsKeyId"])
        assert res["Properties"]["RetentionInDays"] > 0
    for _, lid, res in synth.all_resources():
        if res["Type"] == "AWS::SNS::Topic":
            assert _refers_to_project_key(res["Properties"]["KmsMasterKeyId"]), lid


def test_lambdas_and_state_machine_are_traced(synth) -> None:
    for _, lid, res in synth.all_resources():
        if res["Type"] == "AWS::Lambda::Function":
            assert res["Properties"]["TracingConfig"] == {"Mode": "Active"}, lid
        if res["Type"] == "AWS::StepFunctions::StateMachine":
            assert res["Properties"]["TracingConfiguration"] == {"Enabled": True}
