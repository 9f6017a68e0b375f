"""IAM, sufficient and least: every request each principal makes at run time is allowed by its
synthesized policies, nothing they grant goes unused, and every action/resource pair is one AWS defines.

The requests (``needs.py``) come from the synthesized state machine resolved with a real plan
(the prepare Lambda's planner on the real FD001 files, with the Lambda's own environment from the
template), from the SageMaker jobs and models that definition creates, and from the boto3 calls the
two Lambda handlers make while they run against moto with the deployment's bucket names. The
policies are the synthesized ones, every intrinsic function resolved (``iam.Resolver``).
The principal/call/action/resource table in docs/aws.md is generated from the same needs.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from tests.infra.contracts import iam
from tests.infra.contracts.iam import construct_key
from tests.infra.contracts.needs import (
    Needs,
    call_needs,
    drift_check_needs,
    state_machine_needs,
)

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "aws.md"
TABLE_START, TABLE_END = "<!-- iam-table:start -->", "<!-- iam-table:end -->"


@pytest.fixture(scope="module")
def world(synth: Any, resolver: iam.Resolver, lambda_run: dict[str, Any], drift_run: dict[str, Any]) -> dict[str, Any]:
    """Resolved policies per principal and every request the principals make."""
    c, t = synth.built.config, synth.built.training
    principals = {"state machine": construct_key(t.pipeline.role), "SageMaker jobs": construct_key(t.roles.jobs),
                  "SageMaker hosting": construct_key(t.roles.hosting), "prepare Lambda": construct_key(t.prepare.role),
                  "promote Lambda": construct_key(t.promote.role)}
    statements = resolver.role_statements()
    names = {v: k for k, v in principals.items()}

    stack, logical = construct_key(t.state_machine).split("/")
    definition = json.loads(resolver.resolve(stack, synth.templates[stack]["Resources"][logical]["Properties"]
                                             ["DefinitionString"]))
    key_arn = next(s["Resource"] for s in statements[principals["state machine"]]
                   if s.get("Action") == "kms:DescribeKey")
    buckets = {c.bucket_name(kind, iam.ACCOUNT): key_arn for kind in ("data", "artifacts")}
    n = Needs(c.region, buckets)

    run = lambda_run
    plan, promotion = run["plan"], run["promotion"]
    for call in run["prepare_calls"]:
        call_needs(n, principals["prepare Lambda"], call)
    for call in run["promote_calls"]:
        call_needs(n, principals["promote Lambda"], call)
    # a model over boto3's 8 MB multipart threshold is copied part by part, aborted on failure
    kept = promotion["model_data_url"].removeprefix("s3://")
    n.add(principals["promote Lambda"], "s3.copy (multipart)", ["s3:AbortMultipartUpload"],
          [f"arn:aws:s3:::{kept}"], source="boto3 managed transfer: copy")
    for who, fn in (("prepare Lambda", t.prepare), ("promote Lambda", t.promote)):
        group = resolver.get_att(*construct_key(fn.log_group).split("/"), "Arn")
        n.add(principals[who], "Lambda runtime: logs", ["logs:CreateLogStream", "logs:PutLogEvents"],
              [group.removesuffix("*") + "log-stream:2026/11/30/[$LATEST]0a1b"], source="Lambda: execution role")
        n.add(principals[who], "Lambda runtime: active tracing", ["xray:PutTraceSegments",
                                                                  "xray:PutTelemetryRecords"], ["*"],
              source="Lambda: active tracing (services-xray.html)")
        n.add(principals[who], "Lambda runtime: encrypted environment", ["kms:Decrypt"], [key_arn],
              source="Lambda: environment variable encryption (configuration-envvars-encryption.html)")

    roles = {"pipeline": principals["state machine"],
             resolver.get_att(*construct_key(t.roles.jobs).split("/"), "Arn"): principals["SageMaker jobs"],
             resolver.get_att(*construct_key(t.roles.hosting).split("/"), "Arn"): principals["SageMaker hosting"]}
    topic = resolver.ref(*construct_key(synth.built.training.notifications.topic).split("/"))
    state_input = {"args": run["event"], "plan": plan, "refit_plan": run["refit"], "promotion": promotion,
                   "results": {"refit": {"ModelArtifacts": {"S3ModelArtifacts": run["model"]}},
                               "tuning": {"BestTrainingJob": run["best"]}},
                   "error": {"Error": "DeploymentRolledBack", "Cause": "rolled back"},
                   "_topic_key": key_arn, "_project_key": key_arn, "_endpoint_name": c.endpoint.name}
    assert topic.startswith("arn:aws:sns:")
    state_machine_needs(n, definition, state_input, roles, run["objects"].__getitem__,
                        _ecr_repository(definition))
    drift = synth.built.monitoring.drift  # the scheduled drift check (stacks/drift_monitor.py)
    principals.update({"drift schedule": construct_key(drift.scheduler_role), "drift job": construct_key(drift.job_role),
                       "drift starter Lambda": construct_key(drift.starter.role)})
    names.update({principals[k]: k for k in ("drift schedule", "drift job", "drift starter Lambda")})
    mon = cdk.Stack.of(drift.schedule).stack_name
    schedule = synth.templates[mon]["Resources"][cdk.Stack.of(drift.schedule).get_logical_id(drift.schedule)]
    for call in drift_run["calls"]:
        call_needs(n, principals["drift starter Lambda"], call)
    group = resolver.get_att(*construct_key(drift.starter.log_group).split("/"), "Arn")
    n.add(principals["drift starter Lambda"], "Lambda runtime: logs", ["logs:CreateLogStream", "logs:PutLogEvents"],
          [group.removesuffix("*") + "log-stream:2026/11/30/[$LATEST]0a1b"], source="Lambda: execution role")
    n.add(principals["drift starter Lambda"], "Lambda runtime: active tracing",
          ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"], source="Lambda: active tracing (services-xray.html)")
    n.add(principals["drift starter Lambda"], "Lambda runtime: encrypted environment", ["kms:Decrypt"], [key_arn],
          source="Lambda: environment variable encryption (configuration-envvars-encryption.html)")
    drift_check_needs(n, principals["drift schedule"], principals["drift job"], schedule, drift_run["request"],
                      lambda v: resolver.resolve(mon, v), _ecr_repository(definition))
    # Step Functions' own logging and tracing (cw-logs-sf.html, concepts-xray-tracing.html)
    n.add(principals["state machine"], "execution logging to CloudWatch Logs",
          ["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
           "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
           "logs:DescribeLogGroups"], ["*"], source="Step Functions: logging (cw-logs-sf.html)")
    n.add(principals["state machine"], "X-Ray tracing", ["xray:PutTraceSegments", "xray:PutTelemetryRecords",
                                                         "xray:GetSamplingRules", "xray:GetSamplingTargets"], ["*"],
          source="Step Functions: X-Ray (concepts-xray-tracing.html)")
    return {"principals": principals, "names": names, "statements": statements, "needs": n.items,
            "definition": definition, "plan": plan}


def _ecr_repository(definition: dict[str, Any]) -> str:
    from stacks.images import ecr_repository_arn

    image = definition["States"]["Refit"]["Parameters"]["AlgorithmSpecification"]["TrainingImage"]
    return ecr_repository_arn(image)


def test_every_request_of_every_principal_is_allowed(world: dict[str, Any]) -> None:
    missing = [f"{world['names'][need.principal]}: {need}  [{need.source}]" for need in world["needs"]
               if not iam.allowed(world["statements"][need.principal], need.action, need.resource, need.context)]
    assert not missing, "denied at run time:\n" + "\n".join(sorted(set(missing)))
    assert len(world["needs"]) > 150


def test_nothing_is_granted_that_no_request_uses(world: dict[str, Any]) -> None:
    """Least privilege: every (statement, action) of every principal serves at least one request.

    A wildcard resource is fine only where a real request needs it; VPC-mode statements are not in
    this (default, non-VPC) synthesis."""
    unused = []
    by_principal: dict[str, list[iam.Need]] = defaultdict(list)
    for need in world["needs"]:
        by_principal[need.principal].append(need)
    for who, principal in world["principals"].items():
        for st in world["statements"][principal]:
            if st["Effect"] != "Allow":
                continue
            for action in iam._as_list(st["Action"]):
                used = any(iam.glob_match(action, need.action, case_sensitive=False) and
                           iam.allowed([st], need.action, need.resource, need.context)
                           for need in by_principal[principal])
                if not used:
                    unused.append(f"{who}: {action} on {st['Resource']}")
    assert not unused, "granted but never used:\n" + "\n".join(unused)


def test_no_statement_grants_a_wildcard_action(world: dict[str, Any]) -> None:
    for who, principal in world["principals"].items():
        for st in world["statements"][principal]:
            for action in iam._as_list(st.get("Action", [])):
                assert "*" not in action, f"{who}: {action}"


def test_every_granted_action_and_resource_is_one_aws_defines(world: dict[str, Any]) -> None:
    """AWS's Service Authorization Reference: the action exists and the resource fits one of its types."""
    problems = []
    for who, principal in world["principals"].items():
        for st in world["statements"][principal]:
            for action in iam._as_list(st["Action"]):
                for resource in iam._as_list(st["Resource"]):
                    problems += [f"{who}: {p}" for p in iam.reference_problems(action, resource)]
    assert not problems, "\n".join(problems)


def test_the_evaluator_agrees_with_moto_where_moto_is_right(world: dict[str, Any]) -> None:
    """Cross-check ``iam.allowed`` against moto's evaluator on every condition-free statement and need
    (moto compares actions case-sensitively, so compare in the statement's own spelling)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    checked = 0
    for need in world["needs"]:
        for st in world["statements"][need.principal]:
            if "Condition" in st or need.context:
                continue
            spelled = next((a for a in iam._as_list(st["Action"]) if a.lower() == need.action.lower()), need.action)
            moto = IAMPolicy(json.dumps({"Version": "2012-10-17", "Statement": [st]}))
            theirs = moto.is_action_permitted(spelled, need.resource) == PermissionResult.PERMITTED
            assert iam.allowed([st], spelled, need.resource) == theirs, (st, need)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize(("action", "resource", "context", "expected"), [
    ("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "raw/x"}, True),
    ("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "other/x"}, False),
    ("s3:ListBucket", "arn:aws:s3:::b", {}, False),  # a condition on an absent key does not match
    ("S3:listbucket", "arn:aws:s3:::b", {"s3:prefix": "raw/"}, True),  # actions are case-insensitive
    ("s3:GetObject", "arn:aws:s3:::b/raw/f.gz", {}, True),
    ("s3:GetObject", "arn:aws:s3:::b/secret/f.gz", {}, False),
    ("s3:GetObject", "arn:aws:s3:::b/raw/deny.gz", {}, False),  # explicit deny wins
])
def test_the_evaluator_on_known_cases(action: str, resource: str, context: dict, expected: bool) -> None:
    statements = [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
         "Condition": {"StringLike": {"s3:prefix": ["raw/*"]}}},
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/raw/*"},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/raw/deny.gz"},
    ]
    assert iam.allowed(statements, action, resource, context) is expected


def iam_table(world: dict[str, Any]) -> str:
    """The docs/aws.md table: one row per principal and call, its actions and resources."""
    rows: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
    for need in world["needs"]:
        who = world["names"][need.principal]
        actions, resources = rows.setdefault((who, need.call.split(": ")[0]), (set(), set()))
        actions.add(need.action)
        resources.add(_generic(need.resource, world["plan"]))
    lines = ["| principal | call | actions | resources (run-time names generalised) |", "|---|---|---|---|"]
    for (who, call), (actions, resources) in sorted(rows.items()):
        lines.append(f"| {who} | {call} | {', '.join(sorted(actions))} | "
                     f"{'<br>'.join(f'`{r}`' for r in sorted(resources))} |")
    return "\n".join(lines)


def _generic(resource: str, plan: dict[str, Any]) -> str:
    """Run-time names in a form a reader maps to their deployment (run id, account, generated names)."""
    out = resource.replace(plan["run_id"], "<run-id>").replace(iam.ACCOUNT, "<account>")
    out = re.sub(r"key/[0-9a-f-]{36}", "key/<project key>", out)
    out = re.sub(r"/[0-9a-f]{64}\.", "/<asset hash>.", out)  # the CDK asset of training_src changes with it
    return re.sub(r"-[0-9A-F]{12}\b", "-<generated>", out)


def test_docs_carry_the_generated_iam_table(world: dict[str, Any]) -> None:
    text = DOC.read_text()
    assert TABLE_START in text and TABLE_END in text, f"{DOC} lacks the IAM table markers"
    head, rest = text.split(TABLE_START, 1)
    current, tail = rest.split(TABLE_END, 1)
    current = current.strip()
    expected = iam_table(world)
    if os.environ.get("PREDMAINT_UPDATE_DOCS") == "1":
        DOC.write_text(f"{head}{TABLE_START}\n{expected}\n{TABLE_END}{tail}")
        return
    assert current == expected, ("docs/aws.md's IAM table is out of date: rerun with PREDMAINT_UPDATE_DOCS=1 "
                                 "pytest tests/infra/contracts/test_iam.py")



def test_the_key_policy_delegates_every_kms_request_to_iam(synth: Any, resolver: iam.Resolver,
                                                         world: dict[str, Any]) -> None:
    """KMS checks the key policy first: IAM policies count only for actions the key policy allows the
    account (root) principal, so every kms:* request above must be among them."""
    (stack,) = [s for s in synth.templates if s.endswith("Data")]
    (key,) = [r for r in synth.templates[stack]["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
    policy = resolver.resolve(stack, key["Properties"]["KeyPolicy"])
    root = [s for s in policy["Statement"] if s["Effect"] == "Allow"
            and str(s.get("Principal", {}).get("AWS", "")).endswith(f":iam::{iam.ACCOUNT}:root")]
    assert root, "the key policy must delegate to the account's IAM policies"
    kms = {need.action for need in world["needs"] if need.action.startswith("kms:")}
    missing = [a for a in sorted(kms) if not iam.allowed([{**s, "Resource": "*"} for s in root], a, "*")]
    assert not missing, f"the key policy does not delegate {missing} to IAM"
