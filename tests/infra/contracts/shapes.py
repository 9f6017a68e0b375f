"""Validate a request (or a response) against botocore's service model, strictly.

botocore's own ``ParamValidator`` checks types and required members only. AWS also refuses values
that break a member's ``min``/``max`` (length of strings, lists and maps; value of numbers), its
``enum`` or its ``pattern`` -- the limits behind "Member must have length less than or equal to
256" and "Member must satisfy regular expression pattern". Those live in the shape metadata, and
the patterns use ``\\p{..}`` Unicode classes, which the ``regex`` package reads (``re`` does not).
AWS applies a pattern to the whole value (Java's ``matches``), hence ``fullmatch``.

``problems(service, operation, params)`` lists every violation as ``"Path.To.Member: what"``;
``problems(..., output=True)`` checks a response against the output shape, for stand-ins that
must look like the real API's answers.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any
from unittest import mock

import botocore.session
import regex
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from botocore.validate import ParamValidator


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def operation_model(service: str, operation: str) -> OperationModel:
    """``operation`` in API (``CreateProcessingJob``) or boto3 (``create_processing_job``) spelling."""
    model = _session().get_service_model(service)
    if operation in model.operation_names:
        return model.operation_model(operation)
    for name in model.operation_names:
        if botocore.xform_name(name) == operation:
            return model.operation_model(name)
    raise KeyError(f"{service} has no operation {operation!r}")


@functools.cache
def _pattern(text: str) -> regex.Pattern:
    return regex.compile(text)


def _check(shape: Shape, value: Any, path: str, out: list[str]) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if value is None:
        out.append(f"{path}: null is not a {kind}")
        return
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            out.append(f"{path}: expected an object ({shape.name}), got {type(value).__name__}")
            return
        for name in shape.required_members:
            if name not in value:
                out.append(f"{path}.{name}: required member missing")
        for name, member in value.items():
            if name not in shape.members:
                out.append(f"{path}.{name}: unknown member of {shape.name} (known: {sorted(shape.members)})")
                continue
            _check(shape.members[name], member, f"{path}.{name}", out)
        return
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            out.append(f"{path}: expected a list ({shape.name}), got {type(value).__name__}")
            return
        _limits(meta, len(value), path, "length", out)
        for i, item in enumerate(value):
            _check(shape.member, item, f"{path}[{i}]", out)
        return
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            out.append(f"{path}: expected a map ({shape.name}), got {type(value).__name__}")
            return
        _limits(meta, len(value), path, "entries", out)
        for key, item in value.items():
            _check(shape.key, key, f"{path}<key {key!r}>", out)
            _check(shape.value, item, f"{path}[{key!r}]", out)
        return
    if kind == "string":
        if not isinstance(value, str):
            out.append(f"{path}: expected a string, got {type(value).__name__} {value!r}")
            return
        _limits(meta, len(value), path, "length", out)
        if shape.enum and value not in shape.enum:
            out.append(f"{path}: {value!r} is not one of {shape.enum}")
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            out.append(f"{path}: {value[:80]!r} does not match the pattern {meta['pattern']!r}")
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            out.append(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
            return
        _limits(meta, value, path, "value", out)
        return
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append(f"{path}: expected a number, got {type(value).__name__} {value!r}")
            return
        _limits(meta, value, path, "value", out)
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            out.append(f"{path}: expected a boolean, got {type(value).__name__} {value!r}")
        return
    if kind == "timestamp":
        if not isinstance(value, dt.datetime | str | int | float):
            out.append(f"{path}: expected a timestamp, got {type(value).__name__}")
        return
    if kind == "blob":  # bytes, text, or a file-like body (botocore wraps bodies for checksums)
        if not isinstance(value, bytes | bytearray | str) and not hasattr(value, "read"):
            out.append(f"{path}: expected bytes, got {type(value).__name__}")
        return
    out.append(f"{path}: unhandled shape type {kind}")  # pragma: no cover - botocore has no others


def _limits(meta: dict[str, Any], size: float, path: str, what: str, out: list[str]) -> None:
    if "min" in meta and size < meta["min"]:
        out.append(f"{path}: {what} {size} is below the minimum {meta['min']}")
    if "max" in meta and size > meta["max"]:
        out.append(f"{path}: {what} {size} is above the maximum {meta['max']}")


def problems(service: str, operation: str, params: dict[str, Any], *, output: bool = False) -> list[str]:
    """Every way ``params`` breaks the operation's input (or, with ``output``, output) shape."""
    op = operation_model(service, operation)
    shape = op.output_shape if output else op.input_shape
    out: list[str] = []
    if shape is None:
        return [] if not params else [f"{op.name} takes no {'output' if output else 'input'}"]
    _check(shape, params, op.name, out)
    if not output:  # botocore's own checks as well (its messages, its type rules)
        report = ParamValidator().validate(params, shape)
        if report.has_errors():
            out.append(f"{op.name}: botocore: {report.generate_report()}")
    return out


def assert_valid(service: str, operation: str, params: dict[str, Any], *, output: bool = False) -> None:
    """Raise ``AssertionError`` listing every problem of ``params``."""
    found = problems(service, operation, params, output=output)
    assert not found, f"{service}.{operation} {'response' if output else 'request'} breaks the API model:\n" + \
        "\n".join(found)


class RecordedCall(tuple):
    """``(service, operation, params)`` of one boto3 call made under ``recording_calls``."""

    __slots__ = ()

    @property
    def service(self) -> str:
        return self[0]

    @property
    def operation(self) -> str:
        return self[1]

    @property
    def params(self) -> dict[str, Any]:
        return self[2]


def _copy_params(params: dict[str, Any]) -> dict[str, Any]:
    """A deep copy, except that a streaming body (a file object, e.g. boto3's upload_file) is kept by
    reference: it holds locks and cannot be copied, and its shape is checked as ``hasattr(read)``."""
    return {k: v if hasattr(v, "read") else copy.deepcopy(v) for k, v in params.items()}


@contextlib.contextmanager
def recording_calls() -> Iterator[list[RecordedCall]]:
    """Record every boto3/botocore API call made inside the block (any client, any service), with
    its parameters as botocore is about to validate and serialise them -- after boto3's own
    customisations (e.g. S3 CopySource given as a dict becomes the API's string) and before moto
    answers below that layer. Check them afterwards with ``assert_calls_valid``."""
    from botocore.client import BaseClient

    calls: list[RecordedCall] = []
    original = BaseClient._convert_to_request_dict

    def convert(self: BaseClient, api_params: dict[str, Any], operation_model: Any, *args: Any, **kwargs: Any) -> Any:
        service = self.meta.service_model.service_name
        calls.append(RecordedCall((service, operation_model.name, _copy_params(api_params))))
        return original(self, api_params, operation_model, *args, **kwargs)

    with mock.patch.object(BaseClient, "_convert_to_request_dict", convert):
        yield calls


def assert_calls_valid(calls: list[RecordedCall]) -> None:
    """Every recorded call's parameters satisfy the API model (see ``problems``)."""
    found = [f"{c.service}.{c.operation}: {p}" for c in calls for p in problems(c.service, c.operation, c.params)]
    assert not found, "requests the API would refuse:\n" + "\n".join(found)
