"""VPC mode (``predmaint.vpc.enabled=true``): one extra synthesis of the whole app (module fixture).

Isolated subnets only (no internet gateway, no NAT), the S3 gateway and interface endpoints, the
workload security group, VpcConfig on every SageMaker job definition and model, Lambdas in the VPC,
ENI permissions scoped, and cdk-nag passing (``build`` runs it: an unacknowledged finding fails synth).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from stacks.config import AppConfig, ConfigError
from tests.infra.conftest import CDK_CONTEXT, Synth, synth_app
from tests.infra.test_security import _state_machine_definition, _statements, _tasks


@pytest.fixture(scope="module")
def vpc_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    ctx = copy.deepcopy(CDK_CONTEXT)
    ctx["predmaint.vpc.enabled"] = "true"  # a -c override, as on the command line
    return synth_app(tmp_path_factory.mktemp("cdk.out.vpc"), ctx)


@pytest.fixture(scope="module")
def definition(vpc_synth: Synth) -> dict[str, Any]:
    return _state_machine_definition(vpc_synth)


def _is_vpc_config(value: Any) -> bool:
    return set(value) == {"SecurityGroupIds", "Subnets"} and len(value["SecurityGroupIds"]) == 1 \
        and len(value["Subnets"]) == 2  # max_azs defaults to 2


def test_default_config_has_no_network(synth) -> None:
    assert synth.built.network is None
    assert not [r for _, _, r in synth.all_resources() if r["Type"].startswith("AWS::EC2::")]


def test_cdk_nag_passes_and_network_stack_exists(vpc_synth: Synth) -> None:
    # build() ran the AwsSolutions checks as a validation plugin: synthesis fails on any unacknowledged finding
    assert vpc_synth.built.config.vpc.enabled is True
    assert vpc_synth.built.network is not None
    assert any(name.endswith("-Network") for name in vpc_synth.templates)


def test_vpc_is_isolated(vpc_synth: Synth) -> None:
    t = vpc_synth.template("Network")
    types = [r["Type"] for r in t["Resources"].values()]
    for forbidden in ("AWS::EC2::InternetGateway", "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::NatGateway",
                      "AWS::EC2::EIP", "AWS::EC2::EgressOnlyInternetGateway"):
        assert forbidden not in types
    (vpc,) = vpc_synth.resources("Network", "AWS::EC2::VPC").values()
    assert vpc["Properties"]["CidrBlock"] == "10.42.0.0/16"
    subnets = vpc_synth.resources("Network", "AWS::EC2::Subnet").values()
    assert len(subnets) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets)
    assert not vpc_synth.resources("Network", "AWS::EC2::Route")  # the S3 gateway endpoint adds its own routes
    assert vpc_synth.resources("Network", "AWS::EC2::FlowLog")


def test_endpoints(vpc_synth: Synth) -> None:
    endpoints = list(vpc_synth.resources("Network", "AWS::EC2::VPCEndpoint").values())
    services = {}
    for ep in endpoints:
        name = ep["Properties"]["ServiceName"]
        if isinstance(name, dict):  # the S3 gateway: com.amazonaws.<Ref AWS::Region>.s3
            name = "".join(p if isinstance(p, str) else "<region>" for p in name["Fn::Join"][1])
        services[name.split(".", 3)[3]] = ep["Properties"]
    assert set(services) == {"s3", "sagemaker.api", "sagemaker.runtime", "sts", "logs", "ecr.api", "ecr.dkr", "kms",
                             "ssm", "states", "sns", "monitoring", "xray"}
    assert services.pop("s3")["VpcEndpointType"] == "Gateway"
    for props in services.values():
        assert props["VpcEndpointType"] == "Interface" and props["PrivateDnsEnabled"] is True
        assert len(props["SubnetIds"]) == 2


def test_security_groups_allow_only_self_and_https(vpc_synth: Synth) -> None:
    groups = vpc_synth.resources("Network", "AWS::EC2::SecurityGroup")
    for lid, sg in groups.items():
        for rule in sg["Properties"].get("SecurityGroupIngress", []):
            assert "CidrIp" not in rule, (lid, rule)  # ingress only from the workload group
        for rule in sg["Properties"].get("SecurityGroupEgress", []):
            if rule.get("CidrIp") == "0.0.0.0/0":
                assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443), (lid, rule)
    for res in [*vpc_synth.resources("Network", "AWS::EC2::SecurityGroupIngress").values(),
                *vpc_synth.resources("Network", "AWS::EC2::SecurityGroupEgress").values()]:
        p = res["Properties"]
        assert "SourceSecurityGroupId" in p or "DestinationSecurityGroupId" in p, p


def test_every_job_and_model_carries_vpc_config(vpc_synth: Synth, definition: dict[str, Any]) -> None:
    processing = _tasks(definition, "createProcessingJob.sync")
    assert len(processing) == 2
    for job in processing:
        assert _is_vpc_config(job["Parameters"]["NetworkConfig"]["VpcConfig"])
        assert job["Parameters"]["NetworkConfig"]["EnableNetworkIsolation"] is True
    (refit,) = _tasks(definition, "createTrainingJob.sync")
    (tuning,) = _tasks(definition, "createHyperParameterTuningJob.sync")
    training = [refit["Parameters"], *tuning["Parameters"]["TrainingJobDefinitions"]]
    assert len(training) >= 2
    for job in training:
        assert _is_vpc_config(job["VpcConfig"])
    (create_model,) = _tasks(definition, "sagemaker:createModel")
    assert _is_vpc_config(create_model["Parameters"]["VpcConfig"])
    models = vpc_synth.resources("Endpoint", "AWS::SageMaker::Model").values()
    assert models
    for model in models:
        assert _is_vpc_config(model["Properties"]["VpcConfig"])


def test_lambdas_in_the_vpc(vpc_synth: Synth) -> None:
    functions = [(lid, r) for _, lid, r in vpc_synth.all_resources() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) >= 2
    for lid, fn in functions:
        vpc = fn["Properties"]["VpcConfig"]
        assert len(vpc["SubnetIds"]) == 2 and len(vpc["SecurityGroupIds"]) == 1, lid


def test_sagemaker_roles_may_manage_enis_in_the_project_network_only(vpc_synth: Synth) -> None:
    roles = vpc_synth.built.training.roles
    stack = vpc_synth.template("Training")
    for role in (roles.jobs, roles.hosting):
        policy_ids = [lid for lid, r in stack["Resources"].items() if r["Type"] == "AWS::IAM::Policy"
                      and json.dumps(r["Properties"]["Roles"]) == json.dumps([{"Ref": stack_logical_id(role)}])]
        (policy,) = policy_ids
        statements = list(_statements(stack["Resources"][policy]))
        create = [st for st in statements if "ec2:CreateNetworkInterface" in json.dumps(st["Action"])
                  and st["Action"] == "ec2:CreateNetworkInterface"]
        assert len(create) == 1 and "*" not in create[0]["Resource"]
        text = json.dumps(create[0]["Resource"])
        assert "subnet/" in text and "security-group/" in text
        for st in statements:
            if st["Resource"] == "*":
                assert all(not a.startswith("ec2:") or a.startswith("ec2:Describe") for a in _list(st["Action"]))


def stack_logical_id(construct) -> str:
    import aws_cdk as cdk

    return cdk.Stack.of(construct).get_logical_id(construct.node.default_child)


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


@pytest.mark.parametrize("key, value, match", [
    ("cidr", "10.42.0.0/33", "predmaint.vpc.cidr"),
    ("cidr", "10.42.0.1/16", "predmaint.vpc.cidr"),  # host bits set
    ("cidr", "not-a-cidr", "predmaint.vpc.cidr"),
    ("cidr", "10.0.0.0/8", "predmaint.vpc.cidr"),  # too large for a VPC
    ("max_azs", 4, "predmaint.vpc.max_azs"),
    ("max_azs", 0, "predmaint.vpc.max_azs"),
    ("enabled", "yes", "predmaint.vpc.enabled"),
    ("nat", True, "predmaint.vpc"),
])
def test_vpc_config_validation(key: str, value: Any, match: str) -> None:
    ctx = copy.deepcopy(CDK_CONTEXT)
    ctx[f"predmaint.vpc.{key}"] = value
    with pytest.raises(ConfigError, match=match):
        AppConfig.from_context(ctx)


def test_vpc_config_defaults_and_overrides() -> None:
    cfg = AppConfig.from_context(CDK_CONTEXT)
    assert (cfg.vpc.enabled, cfg.vpc.cidr, cfg.vpc.max_azs) == (False, "10.42.0.0/16", 2)
    ctx = {**copy.deepcopy(CDK_CONTEXT), "predmaint.vpc.cidr": "10.7.0.0/20", "predmaint.vpc.max_azs": "3"}
    cfg = AppConfig.from_context(ctx)
    assert (cfg.vpc.cidr, cfg.vpc.max_azs) == ("10.7.0.0/20", 3)
