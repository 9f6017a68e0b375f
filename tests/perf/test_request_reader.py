"""The compiled request reader (request.c): bit-identical features to the batch code, and every
request it is not sure about goes to the Python path, so the answers never depend on it."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training_src import features as F
from training_src import inference as I
from training_src.predmaint_serving import codec, native, reader
from training_src.predmaint_serving import model as M
from training_src.profiles import load_profile, parse_profile

needs_reader = pytest.mark.skipif(native.load_library("request") is None, reason="no C compiler here")
pytestmark = needs_reader
JSON = "application/json"


@pytest.fixture(scope="module")
def model(fd001_perf):
    m = I.model_fn(str(fd001_perf["model_dir"]))
    assert m.reader is not None, "the reader loads and passes its self-check for the FD001 model"
    return m


@pytest.fixture(scope="module")
def python_model(model):
    return dataclasses.replace(model, reader=None)


def _bounds(df):
    ids = df["unit"].to_numpy()
    return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])


def _body(df, a, b, asset_id=None):
    rows = df.iloc[a:b].drop(columns=["unit"]).to_dict("records")
    inst = {"readings": rows} if asset_id is None else {"asset_id": asset_id, "readings": rows}
    return codec.dumps({"instances": [inst]})


def _reader(spec):
    m = M.for_spec(spec)  # only what the reader and the Python parser need (no predictor)
    return m, reader.RequestReader.for_model(m)  # None if its self-check failed


def _check_every_unit(df, spec, lengths):
    """Reader == batch == Python serving path for every unit cut to each length."""
    m, rd = _reader(spec)
    assert rd is not None
    batch = F.transform(df, spec, life=False).to_numpy().astype(np.float32)
    b = _bounds(df)
    checked = 0
    for a, z in itertools.pairwise(b):
        for n in sorted({min(n, z - a) for n in lengths}):
            body = _body(df, a, a + n, asset_id=f"u{a}")
            got = rd.read(body)  # short of the window too: read, with the count for the Python path's warning
            assert got is not None and got[0] == [f"u{a}"]
            np.testing.assert_array_equal(got[1][0], batch[a + n - 1])
            assert (got[4] is None) == (n >= (spec.min_readings or 0)) and (got[4] is None or got[4].tolist() == [n])
            want = codec.read_python(body, m).X
            np.testing.assert_array_equal(want[0], batch[a + n - 1])
            checked += 1
    # and every unit in one request (the Python path gathers windows across assets)
    rows = [{"asset_id": int(u), "readings": g.drop(columns=["unit"]).to_dict("records")}
            for u, g in df.groupby("unit", sort=False) if len(g) >= (spec.min_readings or 0)]
    keep_units = [r["asset_id"] for r in rows]
    df = df[df["unit"].isin(keep_units)]
    b = _bounds(df)
    batch = F.transform(df, spec, life=False).to_numpy().astype(np.float32)
    ids, X, *_ = rd.read(codec.dumps({"instances": rows}))
    assert ids == [r["asset_id"] for r in rows]
    np.testing.assert_array_equal(X, batch[b[1:] - 1])
    # the fleet-scoring entry: the validated matrix itself, all assets at once
    np.testing.assert_array_equal(rd.features(df[m.required].to_numpy(dtype=float), b), batch[b[1:] - 1])
    return checked


def test_fd001_model_every_unit_and_history_length(fd001_perf, test_fleet):
    n = _check_every_unit(test_fleet, fd001_perf["spec"], [1, 2, 9, 10, 11, 29, 30, 31, 74, 75, 76, 10**6])
    assert n > 1000


@pytest.mark.parametrize("windows", [
    {"sizes": [0, 5, 40], "stats": ["mean", "std", "slope", "min", "max"], "ewm_spans": [4, 20]},
    {"sizes": [5, 40], "stats": ["mean", "std", "slope", "min", "max"], "ewm_spans": [4], "health_index": True},
])
def test_every_stat_ewm_and_padding(test_fleet, windows):
    doc = load_profile("cmapss", "FD001").to_dict()
    doc["windows"] = windows
    profile = parse_profile(doc, subset="FD001", source="test")
    df = F.validate_readings(test_fleet[test_fleet["unit"] <= 30], profile)
    _check_every_unit(df, F.fit_spec(df, profile), [1, 3, 5, 6, 12, 39, 40, 41, 59, 60, 61, 10**6])


def test_six_operating_regimes(test_fleet):
    """FD002-shaped data: settings at six operating points, sensors shifted per regime."""
    rng = np.random.default_rng(3)
    df = test_fleet[test_fleet["unit"] <= 25].copy()
    points = np.array([[0, 0, 100], [10, 0.25, 100], [20, 0.7, 100], [25, 0.62, 60], [35, 0.84, 100],
                       [42, 0.84, 100]], dtype=float)
    reg = rng.integers(0, 6, size=len(df))
    for j, c in enumerate(["setting_1", "setting_2", "setting_3"]):
        df[c] = points[reg, j] + rng.normal(0, 1e-3, size=len(df))
    sensors = [c for c in df.columns if c.startswith("sensor_")]
    df[sensors] = df[sensors].to_numpy() * (1 + 0.05 * reg[:, None])
    profile = load_profile("cmapss", "FD001")
    df = F.validate_readings(df, profile)
    spec = F.fit_spec(df, profile)
    assert spec.n_regimes == 6 and spec.channels[-1] == "hi" and len(spec.hi_weights) == 6
    _check_every_unit(df, spec, [1, 10, 29, 30, 31, 10**6])


def test_the_self_check_catches_a_different_summation_order(model, test_fleet, monkeypatch):
    """Were the Python path to sum window values in another order (F-ordered columns, as
    ``matrix[:, idx]`` gives), the load-time check would see it and keep the Python path.
    (A spec without a health index: appending that channel makes the block C-ordered again.)"""
    assert model.reader.agrees_with_python(model)
    doc = load_profile("cmapss", "FD001").to_dict()
    doc["windows"] = {"sizes": [0, 30], "stats": ["mean", "slope"]}
    profile = parse_profile(doc, subset="FD001", source="test")
    m, rd = _reader(F.fit_spec(F.validate_readings(test_fleet[test_fleet["unit"] <= 30], profile), profile))
    assert rd is not None and rd.agrees_with_python(m)
    monkeypatch.setattr(F.ColumnMatrix, "take",
                        lambda self, names: self.matrix[:, [self.position[c] for c in names]])
    assert not rd.agrees_with_python(m)


def test_fleet_entry_checks_its_input(model):
    with pytest.raises(ValueError, match="expected"):
        model.reader.features(np.zeros((5, 3)), np.array([0, 5]))
    empty_asset = np.array([0, 0, 4])  # an asset without readings: declined, not a crash
    assert model.reader.features(np.ones((4, len(model.required))), empty_asset) is None


def test_switch_off(fd001_perf, monkeypatch):
    monkeypatch.setenv("PREDMAINT_NATIVE_REQUEST", "0")
    assert I.model_fn(str(fd001_perf["model_dir"])).reader is None


# ---------------------------------------------------------------------------------------------
# Same answers with and without the reader, whatever the body
# ---------------------------------------------------------------------------------------------
def _good(test_fleet, n=31):  # at least the model's window: shorter ones go to the Python path
    rows = test_fleet[test_fleet["unit"] == 1].drop(columns=["unit"]).head(n).to_dict("records")
    return {"instances": [{"asset_id": "e1", "readings": rows}]}


def _both(model, python_model, body, custom=None):
    fast = I.handle(model, body, JSON, None, custom)
    slow = I.handle(python_model, body, JSON, None, custom)
    assert fast == slow, body[:300]
    return fast


def _text(doc):
    return json.dumps(doc)


def _variants(test_fleet):
    """(name, body, whether the reader takes it)."""
    good = _good(test_fleet)
    text = _text(good)
    r0 = good["instances"][0]["readings"][0]

    def with_reading(change):
        doc = json.loads(text)
        change(doc["instances"][0]["readings"][1])
        return _text(doc)

    def with_instance(change):
        doc = json.loads(text)
        change(doc["instances"][0])
        return _text(doc)

    s2 = json.dumps(r0["sensor_2"])
    out = [
        ("plain", text, True),
        ("pretty", json.dumps(good, indent="\t"), True),
        ("explain false", _text({**good, "explain": False}), True),
        ("explain true", _text({**good, "explain": True}), False),
        ("unused request key", _text({**good, "note": {"a": [1, -2.5e3, None, True, False, "x"], "b": {}}}), False),
        ("unused instance key", with_instance(lambda i: i.update(note=[1, None])), False),
        ("unused reading key", with_reading(lambda r: r.update(note={"a": [1, -2.5e3, None, True, False, "x"]})),
         True),
        ("int asset id", with_instance(lambda i: i.update(asset_id=-17)), True),
        ("no asset id", with_instance(lambda i: i.pop("asset_id")), True),
        ("integers and exponents", with_reading(lambda r: r.update(sensor_3=1590, sensor_4="@e")).replace(
            '"@e"', "1.40082E3"), True),
        ("minus zero", with_reading(lambda r: r.update(setting_1="@z")).replace('"@z"', "-0"), True),
        ("minus zero float", with_reading(lambda r: r.update(setting_1="@z")).replace('"@z"', "-0.0"), True),
        ("17 digits", with_reading(lambda r: r.update(sensor_2=642.12345678901234567)), True),
        ("long mantissa", text.replace(s2, s2 + "00000000000000000000001", 1), True),
        ("tiny", with_reading(lambda r: r.update(setting_2="@t")).replace('"@t"', "1e-400"), False),
        ("subnormal", with_reading(lambda r: r.update(setting_2="@t")).replace('"@t"', "4.9e-324"), True),
        ("non-ascii id", with_instance(lambda i: i.update(asset_id="moteur-é")), False),
        ("escaped id", with_instance(lambda i: i.update(asset_id='a"b\\c')), False),
        ("escaped key", text.replace('"cycle"', '"cycl\\u0065"', 1), False),
        ("huge int id", with_instance(lambda i: i.update(asset_id=12345678901234567890)), False),
        ("float id", with_instance(lambda i: i.update(asset_id=1.5)), False),
        ("bool id", with_instance(lambda i: i.update(asset_id=True)), False),
        ("reversed", with_instance(lambda i: i.update(readings=i["readings"][::-1])), False),
        ("duplicate time", with_reading(lambda r: r.update(cycle=1)), False),
        ("duplicate key", text.replace('"sensor_2": ', '"sensor_2": 1.0, "sensor_2": ', 1), False),
        ("missing column", with_reading(lambda r: r.pop("sensor_4")), False),
        ("null value", with_reading(lambda r: r.update(sensor_4=None)), False),
        ("bool value", with_reading(lambda r: r.update(sensor_4=True)), False),
        ("string value", with_reading(lambda r: r.update(sensor_4="1.5")), False),
        ("list value", with_reading(lambda r: r.update(sensor_4=[1.0])), False),
        ("NaN", with_reading(lambda r: r.update(sensor_4="@n")).replace('"@n"', "NaN"), False),
        ("1e999", with_reading(lambda r: r.update(sensor_4="@n")).replace('"@n"', "1e999"), False),
        ("NaN unused", _text({**good, "note": "@n"}).replace('"@n"', "NaN"), False),
        ("leading zero", with_reading(lambda r: r.update(sensor_4="@n")).replace('"@n"', "01"), False),
        ("bare dot", with_reading(lambda r: r.update(sensor_4="@n")).replace('"@n"', "1."), False),
        ("plus", with_reading(lambda r: r.update(sensor_4="@n")).replace('"@n"', "+1"), False),
        ("trailing comma", text[:-2] + ",]}", False),
        # horizons: read when intervals.is_valid_horizon plainly accepts them, else left to the Python path
        ("horizon", _text({**good, "horizon": 30}), True),
        ("horizon float", _text({**good, "horizon": 12.5}), True),
        ("horizon exponent", _text({**good, "horizon": "@h"}).replace('"@h"', "3E1"), True),
        ("horizon minus zero", _text({**good, "horizon": "@h"}).replace('"@h"', "-0"), True),
        ("horizon minus zero float", _text({**good, "horizon": "@h"}).replace('"@h"', "-0.0"), True),
        ("instance horizon", with_instance(lambda i: i.update(horizon=7)), True),
        ("both horizons", _text({**json.loads(with_instance(lambda i: i.update(horizon=0.25))), "horizon": 9}), True),
        ("negative horizon", _text({**good, "horizon": -1}), False),
        ("string horizon", _text({**good, "horizon": "30"}), False),
        ("null horizon", _text({**good, "horizon": None}), False),
        ("huge horizon", _text({**good, "horizon": 2**64}), False),
        ("1e999 horizon", _text({**good, "horizon": "@h"}).replace('"@h"', "1e999"), False),
        ("duplicate horizon", text[:-1] + ', "horizon": 1, "horizon": 2}', False),
        ("negative instance horizon", with_instance(lambda i: i.update(horizon=-0.5)), False),
        ("bool instance horizon", with_instance(lambda i: i.update(horizon=True)), False),
        ("trailing garbage", text + " x", False),
        ("trailing space", text + " \n", True),
        ("empty readings", with_instance(lambda i: i.update(readings=[])), False),
        ("reading not object", with_instance(lambda i: i.update(readings=[1, 2])), False),
        ("empty instances", '{"instances": []}', False),
        ("instances not list", '{"instances": {}}', False),
        ("top-level list", "[1]", False),
        ("deep", _text({**good, "note": "@d"}).replace('"@d"', "[" * 100 + "]" * 100), False),
        ("control char", _text({**good, "note": "@c"}).replace('"@c"', '"a\tb"'), False),
        ("duplicate instances", text[:-1] + ', "instances": []}', False),
        ("too many instances", _text({"instances": good["instances"] * (codec.MAX_INSTANCES + 1)}), False),
    ]
    return [(name, body.encode(), ok) for name, body, ok in out]


def test_same_answer_with_and_without_the_reader(model, python_model, test_fleet):
    statuses = {}
    for name, body, taken in _variants(test_fleet):
        assert (model.reader.read(body) is not None) == taken, name
        statuses[name] = _both(model, python_model, body)[0]
    assert statuses["plain"] == statuses["reversed"] == statuses["duplicate key"] == 200
    assert statuses["null value"] == statuses["1e999"] == statuses["trailing comma"] == 400
    assert statuses["too many instances"] == 413
    # read by the compiled reader; a model without interval calibration refuses them (the Python path's 400)
    answered = 200 if model.intervals is not None else 400
    assert all(statuses[n] == answered for n in ("horizon", "horizon exponent", "instance horizon", "both horizons"))
    assert all(statuses[n] == 400 for n in ("negative horizon", "null horizon", "negative instance horizon"))
    # latin-1 bytes and a lone surrogate are malformed either way
    for body in (b'{"instances": [{"asset_id": "\xe9", "readings": []}]}', b'{"instances": "\\ud800"}', b"\x00"):
        assert model.reader.read(body) is None
        assert _both(model, python_model, body)[0] == 400
    # explanations asked for in the header: the Python path answers, with contributions
    status, out, _ = _both(model, python_model, _text(_good(test_fleet)).encode(), custom="explain=true")
    assert status == 200 and "contributions" in json.loads(out)["predictions"][0]


@pytest.fixture(scope="module")
def plain_body(test_fleet):
    return _text(_good(test_fleet)).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_bodies_get_the_same_answer(model, python_model, plain_body, data):
    body = bytearray(plain_body)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        op = data.draw(st.sampled_from(["flip", "delete", "insert", "dup"]))
        if op == "flip":
            body[at] = data.draw(st.sampled_from(b'{}[]:,"\\-+.eE0123456789 tfn\x00\xff'))
        elif op == "delete":
            del body[at:at + data.draw(st.integers(1, 8))]
        elif op == "insert":
            body[at:at] = data.draw(st.sampled_from([b",", b" ", b'"x":1,', b"[", b"}", b"-", b"e5", b"0"]))
        else:
            body[at:at] = body[at:at + data.draw(st.integers(1, 40))]
        if not body:
            body = bytearray(b"{}")
    _both(model, python_model, bytes(body))



# ---------------------------------------------------------------------------------------------
# Allow-lists: a key of the body or of an instance the reader does not handle is declined, never skipped
# ---------------------------------------------------------------------------------------------
def test_the_compiled_allow_lists_are_the_codecs_fields():
    assert native.request_fields() == (codec.REQUEST_FIELDS, codec.INSTANCE_FIELDS)


@pytest.mark.parametrize("where", ["request", "instance"])
def test_a_field_added_to_the_codec_only_is_declined_by_the_compiled_path(fd001_perf, test_fleet, monkeypatch,
                                                                         where):
    """A field the codec reads (added by monkeypatch) that request.c does not know: the compiled reader declines
    a body carrying it, and a model loaded with that codec does not use the reader; the Python path answers."""
    good = _good(test_fleet)
    if where == "request":
        body, fields = codec.dumps({**good, "priority": 1}), "REQUEST_FIELDS"
    else:
        body, fields = codec.dumps({"instances": [{**good["instances"][0], "priority": 1}]}), "INSTANCE_FIELDS"
    model = I.model_fn(str(fd001_perf["model_dir"]))
    assert model.reader is not None and model.reader.read(codec.dumps(good)) is not None
    assert model.reader.read(body) is None  # declined: the key is not skipped
    monkeypatch.setattr(codec, fields, (*getattr(codec, fields), "priority"))
    with_field = I.model_fn(str(fd001_perf["model_dir"]))
    assert with_field.reader is None  # its allow-lists are not the codec's: not used at all
    calls = []
    read_python = codec.read_python
    monkeypatch.setattr(codec, "read_python", lambda *a, **k: calls.append(1) or read_python(*a, **k))
    status, out, _ = I.handle(model, body, JSON, JSON)
    assert status == 200 and calls == [1] and json.loads(out)["predictions"][0]["asset_id"] == "e1"


@pytest.mark.parametrize("short", [False, True])
def test_the_self_check_catches_a_life_summary_that_disagrees(model, monkeypatch, short):
    """Were the Python path to return a different life summary (here: one extra key) in
    either of the self-check's splits (halves of a history, or both parts shorter than the window),
    the load-time check would see it and keep the Python path."""
    assert model.reader.agrees_with_python(model)
    real = codec.read_python
    minimum = model.spec.min_readings

    def off_by_one(body, m):
        got = real(body, m)
        starts = [len(i["readings"]) for i in codec.loads(body)["instances"]]
        if short == (max(starts) < minimum) and all(isinstance(doc, dict) for doc in got.life):
            got.life[0] = {**got.life[0], "extra": 1}
        return got

    monkeypatch.setattr(codec, "read_python", off_by_one)
    assert not model.reader.agrees_with_python(model)
