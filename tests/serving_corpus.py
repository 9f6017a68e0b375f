"""One corpus of requests for both serving paths: the local server (`predmaint serve`,
tests/local/test_server.py) and the SageMaker container's stack (tests/container/test_serving.py).

Each case is ``name -> (body, headers, status)``: the status the contract gives it. Both paths must answer
every case with that status and the same JSON body, byte for byte once parsed. The cases are the kinds of
input the property tests (tests/reliability/test_handler_properties.py) generate, written out: valid and
malformed JSON, bodies that are not UTF-8, lone surrogates, integers beyond 64 bits in every place, NaN
and friends, bad asset ids, life summaries, Accept media ranges with parameters and weights, and the
media-type refusals. A missing Content-Type is left out: the container substitutes application/json
before any hook runs (docs/container.md), the local server answers 415.
"""

from __future__ import annotations

import json
from typing import Any

JSON = {"Content-Type": "application/json"}


def _body(instances: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"instances": instances, **extra}).encode()


def _token(body: bytes, token: bytes) -> bytes:
    """``body`` with the string "__TOKEN__" replaced by raw bytes (a number JSON's dumps would not write)."""
    return body.replace(b'"__TOKEN__"', token)


def corpus(units: dict[int, list[dict[str, float]]]) -> dict[str, tuple[bytes, dict[str, str], int]]:
    """The cases, built on real FD001 test engines (``units``: unit -> readings)."""
    history = units[1]
    short = history[-5:]
    ok = _body([{"asset_id": "engine-1", "readings": history}])
    cases: dict[str, tuple[bytes, dict[str, str], int]] = {
        "one engine": (ok, JSON, 200),
        "three engines": (_body([{"asset_id": f"e{u}", "readings": units[u]} for u in (2, 3, 4)]), JSON, 200),
        "charset parameter": (ok, {"Content-Type": "application/json; charset=utf-8"}, 200),
        "explain in the body": (_body([{"asset_id": "x", "readings": history}], explain=True), JSON, 200),
        "horizon": (_body([{"asset_id": "h", "readings": history}], horizon=30), JSON, 200),
        "life started": (_body([{"asset_id": "l", "readings": history, "life": {}}]), JSON, 200),
        # Accept (RFC 9110 media ranges)
        "browser Accept": (ok, {**JSON, "Accept": "text/html, application/json;q=0.9"}, 200),
        "Accept application/*": (ok, {**JSON, "Accept": "text/csv;q=1, application/*;q=0.1"}, 200),
        "Accept with parameters": (ok, {**JSON, "Accept": "application/json;charset=utf-8;q=0.5"}, 200),
        "Accept json q=0": (ok, {**JSON, "Accept": "application/json;q=0, text/html"}, 406),
        "Accept csv": (ok, {**JSON, "Accept": "text/csv"}, 406),
        "Accept csv and a bad body": (b"{", {**JSON, "Accept": "text/csv"}, 406),
        "text/plain body": (b"hello", {"Content-Type": "text/plain"}, 415),
        # malformed JSON
        "truncated": (ok[: len(ok) // 2], JSON, 400),
        "trailing comma": (b'{"instances": [1,]}', JSON, 400),
        "not an object": (b"[1, 2, 3]", JSON, 400),
        "no instances": (b'{"rows": []}', JSON, 400),
        "empty instances": (b'{"instances": []}', JSON, 400),
        "empty readings": (_body([{"asset_id": "a", "readings": []}]), JSON, 400),
        "binary garbage": (bytes(range(256)), JSON, 400),
        "nested 50": (b"[" * 50 + b"]" * 50, JSON, 400),
        "nested 5000": (b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", JSON, 400),
        "UTF-8 byte order mark": (b"\xef\xbb\xbf" + ok, JSON, 400),
        # bodies that are not UTF-8
        "latin-1 asset id": (_token(_body([{"asset_id": "__TOKEN__", "readings": short}]), '"mot\xe9ur"'.encode("latin-1")),
                             JSON, 400),
        "invalid byte in an asset id": (_body([{"asset_id": "__TOKEN__", "readings": short}]).replace(
            b'"__TOKEN__"', b'"a\xff\xfeb"'), JSON, 400),
        "UTF-16 body": (ok.decode().encode("utf-16"), JSON, 400),
        "lone surrogate escape": (_token(_body([{"asset_id": "__TOKEN__", "readings": short}]), b'"\\ud800"'),
                                  JSON, 400),
        "surrogate pair escape": (_token(_body([{"asset_id": "__TOKEN__", "readings": short}]), b'"\\ud83d\\ude00"'),
                                  JSON, 200),
        "U+FFFD sent as such": (_body([{"asset_id": "\ufffd", "readings": short}]), JSON, 200),
        # integers in every size
        "asset id 2**63-1": (_body([{"asset_id": 2**63 - 1, "readings": short}]), JSON, 200),
        "asset id 2**64-1": (_body([{"asset_id": 2**64 - 1, "readings": short}]), JSON, 200),
        "asset id 2**64": (_body([{"asset_id": 2**64, "readings": short}]), JSON, 400),
        "asset id -2**63-1": (_body([{"asset_id": -(2**63) - 1, "readings": short}]), JSON, 400),
        "asset id of 400 digits": (_token(_body([{"asset_id": "__TOKEN__", "readings": short}]), b"9" * 400), JSON,
                                   400),
        # bad asset ids
        "asset id null": (_body([{"asset_id": None, "readings": short}]), JSON, 400),
        "asset id true": (_body([{"asset_id": True, "readings": short}]), JSON, 400),
        "asset id 1.5": (_body([{"asset_id": 1.5, "readings": short}]), JSON, 400),
        "asset id list": (_body([{"asset_id": [1], "readings": short}]), JSON, 400),
        # bad numbers in a reading
        "horizon -1": (_body([{"asset_id": "a", "readings": short}], horizon=-1), JSON, 400),
        "explain 1": (_body([{"asset_id": "a", "readings": short}], explain=1), JSON, 400),
    }
    for token in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 25, b"9" * 400):
        readings = [dict(r) for r in history]
        readings[-1]["sensor_2"] = "__TOKEN__"
        cases[f"sensor_2 = {token[:30].decode()}"] = (_token(_body([{"asset_id": "a", "readings": readings}]), token),
                                                      JSON, 200 if token == b"9" * 25 else 400)
    for name, value in (("a string", "hot"), ("null", None), ("a list", [1, 2]), ("an object", {"v": 1})):
        readings = [dict(r) for r in history]
        readings[-1]["sensor_3"] = value
        cases[f"sensor_3 is {name}"] = (_body([{"asset_id": "a", "readings": readings}]), JSON, 400)
    readings = [dict(r) for r in history]
    del readings[-1]["sensor_7"]
    cases["missing sensor_7"] = (_body([{"asset_id": "a", "readings": readings}]), JSON, 400)
    cases["duplicated reading"] = (_body([{"asset_id": "a", "readings": [*history, history[-1]]}]), JSON, 400)
    cases["life not an object"] = (_body([{"asset_id": "a", "readings": short, "life": "yes"}]), JSON, 400)
    cases["life with an unknown key"] = (_body([{"asset_id": "a", "readings": short, "life": {"x": 1}}]), JSON, 400)
    return cases
