"""Schemathesis against a running local server (``predmaint serve``, 2 workers), driven by docs/openapi.yaml.

Positive and negative generation (valid-by-schema and schema-violating bodies, headers and media types),
bounded by ``max_examples`` per operation. The checks are the endpoint contract, not schemathesis'
defaults (the schema cannot express which sensors a model requires, so "valid by schema" bodies may
rightly get a 400): no 5xx, every error a 4xx JSON ``{"error": ...}``, every 200 a schema-valid response,
and, checked after every generated run, no worker died. A handful of hand-written bodies cover what generation rarely reaches (deep nesting,
a body just under 6 MB, too many instances, unicode asset ids; bodies over 6 MB are refused before being
read, tested in tests/local/test_server.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from localkit import ServerProcess, http, request_body
from schemathesis import GenerationMode

pytestmark = pytest.mark.xdist_group("reliability-schemathesis")  # one server for the module
OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
JSON = {"Content-Type": "application/json"}


# schemathesis' own pytest plugin does not work with pytest 9 (Function._nodeid): use its hypothesis
# strategies directly, with the server's URL given per call.
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
SCHEMA.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


def _assert_contract(response, case) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300], getattr(case, "body", None))
    if response.status_code >= 400:
        doc = json.loads(response.content)
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], response.text[:300]
    else:
        case.validate_response(response, checks=[schemathesis.checks.response_schema_conformance])


@pytest.mark.parametrize("path,method,mode", [
    ("/invocations", "POST", GenerationMode.POSITIVE), ("/invocations", "POST", GenerationMode.NEGATIVE),
    ("/ping", "GET", GenerationMode.POSITIVE),
])
def test_api_contract_under_generated_input(server: ServerProcess, path, method, mode) -> None:
    base_url = f"http://127.0.0.1:{server.port}"
    before = server.wait_workers(2)
    strategy = SCHEMA[path][method].as_strategy(generation_mode=mode)
    tried = []

    @settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=80, database=None)
    @given(case=strategy)
    def check(case) -> None:
        response = case.call(base_url=base_url, timeout=20)
        tried.append(response.status_code)
        _assert_contract(response, case)

    check()
    print(f"\nschemathesis {method} {path} {mode.value}: {len(tried)} requests, statuses {sorted(set(tried))}")
    # every run checks it: the same two worker processes answered all of it (none died and was replaced)
    assert tried and server.workers() == before, f"a worker was replaced during the fuzzing: {before} -> {server.workers()}"


@pytest.mark.parametrize("name,body,status,fragment", [
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
    ("deep nesting in instances", b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, ""),
    ("too many instances", None, 413, "instances"),
    ("just under 6 MB of padding", b'{"instances": [], "pad": "' + b"x" * (6 * 2**20 - 64) + b'"}', 400,
     "instances"),
])
def test_hand_written_edge_bodies(server: ServerProcess, test_units, name, body, status, fragment) -> None:
    if body is None:
        body = request_body([{"asset_id": "a", "readings": test_units[1][-2:]}] * 1001)
    got, out = http(server.port, "POST", "/invocations", body, JSON, timeout=30)
    assert got == status, (name, out[:200])
    assert fragment in json.loads(out)["error"]


@pytest.mark.parametrize("asset", ["engine-7", "моторы-7", "泵-3", "🔧⚙️", "a\u0000b", "", "x" * 10_000, 2**53, -1])
def test_unicode_asset_ids_round_trip(server: ServerProcess, test_units, asset) -> None:
    status, out = http(server.port, "POST", "/invocations",
                       request_body([{"asset_id": asset, "readings": test_units[2]}]), JSON)
    assert status == 200 and json.loads(out)["predictions"][0]["asset_id"] == asset
