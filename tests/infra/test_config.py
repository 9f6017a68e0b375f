"""Typed configuration: defaults from cdk.json, -c overrides, clear validation errors."""

from __future__ import annotations

import copy

import pytest

from stacks.config import AppConfig, ConfigError
from tests.infra.conftest import CDK_CONTEXT


def _with(path: str, value) -> dict:
    ctx = copy.deepcopy(CDK_CONTEXT)
    node = ctx["predmaint"]
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return ctx


def test_cdk_json_is_a_valid_config():
    cfg = AppConfig.from_context(CDK_CONTEXT)
    assert cfg.endpoint.min_capacity <= cfg.endpoint.initial_instance_count <= cfg.endpoint.max_capacity
    assert cfg.alarm_names == (f"{cfg.endpoint.name}-5xx-errors", f"{cfg.endpoint.name}-model-latency-p99")
    assert cfg.bucket_name("data", "123456789012") == "predmaint-data-123456789012-eu-west-1"


def test_local_mode_reads_cdk_json_with_the_same_typed_reader(tmp_path, monkeypatch):
    import json

    from predmaint import deployment
    from predmaint.errors import UsageError

    assert deployment.load() == AppConfig.from_context(CDK_CONTEXT)
    doc = {"context": copy.deepcopy(CDK_CONTEXT)}
    doc["context"]["predmaint"]["endpoint"]["data_capture_pct"] = 50
    bad = tmp_path / "cdk.json"
    bad.write_text(json.dumps(doc))
    monkeypatch.setenv("PREDMAINT_CDK_JSON", str(bad))
    with pytest.raises(UsageError, match=rf"^{bad}: predmaint.endpoint: unknown key\(s\) \['data_capture_pct'\]"):
        deployment.load()
    bad.write_text("{")
    with pytest.raises(UsageError, match=rf"^{bad}: not JSON"):
        deployment.load()


def test_drift_thresholds_default_to_the_drift_rules_own():
    """One home for the defaults: training_src/drift.py's, which the container's drift job uses too."""
    from training_src import drift

    cfg = AppConfig.from_context(CDK_CONTEXT)
    assert (cfg.drift.psi_threshold, cfg.drift.alpha) == (drift.PSI_THRESHOLD, drift.ALPHA)
    tighter = AppConfig.from_context(_with("drift.psi_threshold", 0.5))
    assert tighter.drift.psi_threshold == 0.5


def test_dotted_overrides_from_the_command_line():
    # `cdk synth -c predmaint.endpoint.max_capacity=8 -c predmaint.training.use_spot=false`
    ctx = {**CDK_CONTEXT, "predmaint.endpoint.max_capacity": "8", "predmaint.training.use_spot": "false",
           "predmaint.triggers.schedule": "rate(7 days)"}
    cfg = AppConfig.from_context(ctx)
    assert cfg.endpoint.max_capacity == 8 and cfg.training.use_spot is False
    assert cfg.triggers.schedule == "rate(7 days)"


@pytest.mark.parametrize(("path", "value", "message"), [
    ("endpoint.min_capacity", 5, r"min_capacity \(5\) > max_capacity \(4\)"),
    ("endpoint.instance_type", "m5.large", "not a SageMaker instance type"),
    ("training.instance_type", "ml.m5.huge", "not a SageMaker instance type"),
    ("profile", "nope", "unknown profile 'nope'"),
    ("subset", "FD009", "unknown subset 'FD009'"),
    ("tuning.max_parallel_jobs", 50, r"max_parallel_jobs \(50\) > max_jobs \(20\)"),
    ("training.max_wait_minutes", 10, "max_wait_minutes must be >= max_runtime_minutes"),
    ("triggers.schedule", "every tuesday", "not rate"),
    ("endpoint.colour", "red", r"unknown key\(s\) \['colour'\]"),
    ("training.use_spot", "yes", "must be true or false"),
    ("endpoint.max_capacity", "many", "must be a number"),
    ("promotion.rul_regression.max_rsme", 3, "unknown threshold"),
    ("region", "Mars", "not an AWS region"),
    ("job_prefix", "toolongprefix", "1-5 lowercase letters"),
])
def test_invalid_config_is_rejected_with_a_clear_message(path, value, message):
    with pytest.raises(ConfigError, match=message):
        AppConfig.from_context(_with(path, value))


def test_thresholds_reach_the_promote_lambda_unchanged(synth):
    """cdk.json's promotion gates -> the synthesized promote Lambda's THRESHOLDS -> the handler's Thresholds.

    The context passes through jsii on its way into the template: 30.0 arrives as 30 and a null gate is
    dropped, so the comparison is of the Thresholds the handler builds (a dropped null is the default
    None: the gate stays off)."""
    from predmaint.modules import load_module
    from tests.infra.conftest import REPO
    from training_src.promotion import Thresholds

    configured = CDK_CONTEXT["predmaint"]["promotion"]
    assert configured == AppConfig.from_context(CDK_CONTEXT).promotion
    envs = [f["Properties"]["Environment"]["Variables"]
            for f in synth.resources("Training", "AWS::Lambda::Function").values()
            if "THRESHOLDS" in f["Properties"].get("Environment", {}).get("Variables", {})]
    assert len(envs) == 1, "one function (promote) carries the gates"
    promote = load_module(REPO / "lambda" / "promote" / "handler.py", "promote_for_thresholds", register=False)
    settings = promote.Settings.from_env({"MODEL_PACKAGE_GROUP": "g", "IMAGE_URI": "i",
                                          "THRESHOLDS": envs[0]["THRESHOLDS"]})
    assert set(settings.thresholds) == set(configured) == {"rul_regression", "failure_classification"}
    for task, gates in configured.items():
        assert settings.thresholds_for(task) == Thresholds(**gates), task
    assert Thresholds(**configured["rul_regression"]).max_rmse == 30.0  # a real gate, not all None
