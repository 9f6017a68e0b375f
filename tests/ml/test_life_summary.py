"""Life summaries (issue 15): the whole life of an asset in a few hundred bytes that the caller sends back
with its next readings. Exact against the batch features, refused clearly when malformed, ignored with a
warning when another model made it, and served end to end (answer, updated summary, interval)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re

import numpy as np
import pytest

from training_src import features as F
from training_src import inference as I
from training_src.dataio import read_table, resolve_file
from training_src.predmaint_serving import codec
from training_src.profiles import load_profile


@pytest.fixture(scope="module")
def fd002(data_dir):
    """Forty FD002 engines (six operating conditions) and a spec fitted on them."""
    p = load_profile("cmapss", "FD002")
    df = F.validate_readings(read_table(resolve_file(data_dir, p.file("train")), p), p)
    df = df[df["unit"] <= 40].reset_index(drop=True)
    return p, df, F.fit_spec(df, p)


def _cols(df, a: int, b: int) -> dict[str, np.ndarray]:
    return {c: df[c].to_numpy()[a:b] for c in df.columns}


def test_a_streamed_summary_gives_the_batch_life_features_bit_for_bit(fd002):
    """The caller starts a summary, stores the JSON it gets back and sends it with each later window
    (windows overlap, so some readings arrive twice): at every step the life features equal the batch
    features of the whole history so far, bit for bit, and each reading is counted once."""
    _, df, spec = fd002
    assert spec.life_stats == ["mean", "slope"] and spec.n_regimes == 6
    names = F.life_names(spec)
    assert spec.feature_names[-len(names):] == names and "hi_slope_life" in names
    batch = F.transform(df, spec).to_numpy()
    ids = df["unit"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    checked = 0
    for a, b in itertools.pairwise(bounds[:9]):
        doc = {}
        end = a
        while end < b:  # windows of up to 30 readings, advancing 17 at a time (13 sent twice)
            new_end = min(b, end + 17)
            lo = max(a, new_end - 30)
            X, states = F.transform_last_life(_cols(df, lo, new_end), np.array([0, new_end - lo]), spec,
                                              [codec.parse_life(doc, spec)])
            np.testing.assert_array_equal(X[0, -len(names):], batch[new_end - 1, -len(names):])
            doc = json.loads(json.dumps(codec.life_document(states[0], spec)))  # what the caller stores
            assert doc["count"] == new_end - a and doc["first"] == df["cycle"].iat[a]
            end = new_end
            checked += 1
    assert checked > 50
    # resending the same window changes nothing
    X2, again = F.transform_last_life(_cols(df, b - 30, b), np.array([0, 30]), spec, [codec.parse_life(doc, spec)])
    assert codec.life_document(again[0], spec) == doc
    np.testing.assert_array_equal(X2[0, -len(names):], batch[b - 1, -len(names):])


def test_without_a_summary_the_life_features_are_missing_and_training_sees_both(fd002):
    _, df, spec = fd002
    k = len(F.life_names(spec))
    X = F.transform(df, spec).to_numpy()
    bare = F.transform(df, spec, life=False).to_numpy()
    assert np.isnan(bare[:, -k:]).all() and not np.isnan(X).any()
    np.testing.assert_array_equal(bare[:, :-k], X[:, :-k])
    y = np.arange(len(X), dtype=float)
    X2, y2 = F.with_and_without_life(X, y, spec)
    np.testing.assert_array_equal(X2, np.vstack([X, bare]))
    np.testing.assert_array_equal(y2, np.r_[y, y])
    no_life = F.FeatureSpec(**{**dataclasses.asdict(spec), "life_stats": []})
    assert F.with_and_without_life(X[:, :-k], y, no_life)[0] is not None
    assert F.with_and_without_life(X[:, :-k], y, no_life)[0].shape == X[:, :-k].shape  # unchanged


#: malformed summaries (a change to a good one) and the start of the 400 each gets
MALFORMED = [
    (lambda d: "yes", r"^life: must be an object: \{\} to start a life summary"),
    (lambda d: {**d, "extra": 1}, r"^life\.extra: unknown key; a life summary has \['count', 'first', 'last', 'model', "),
    (lambda d: {k: v for k, v in d.items() if k != "tz"}, r"^life\.tz: missing$"),
    (lambda d: {**d, "model": 7}, r"^life\.model: must be a string$"),
    (lambda d: {**d, "first": "1"}, r"^life\.first: must be a finite number$"),
    (lambda d: {**d, "count": 0}, r"^life\.count: must be a whole number from 1 to 9007199254740992$"),
    (lambda d: {**d, "count": 2.0}, r"^life\.count: must be a whole number from 1 to 9007199254740992$"),
    (lambda d: {**d, "count": 10**30}, r"^life\.count: must be a whole number from 1 to 9007199254740992$"),
    (lambda d: {**d, "first": d["last"] + 1}, r"^life\.first: after last$"),
    (lambda d: {**d, "t": None}, r"^life\.t: must be a finite number$"),
    (lambda d: {**d, "z": d["z"][:-1]}, r"^life\.z: must be a list of \d+ finite numbers$"),
    (lambda d: {**d, "z": [*d["z"][:-1], True]}, r"^life\.z: must be a list of \d+ finite numbers$"),
    (lambda d: {**d, "first": -(10**400)}, r"^life\.first: must be a finite number$"),
    (lambda d: {**d, "tt": 10**400}, r"^life\.tt: must be a finite number$"),
    (lambda d: {**d, "z": [10**400, *d["z"][1:]]}, r"^life\.z: must be a list of \d+ finite numbers$"),
]


@pytest.mark.parametrize("change, message", MALFORMED)
def test_a_malformed_summary_is_refused_naming_the_key(fd002, change, message):
    _, df, spec = fd002
    _, states = F.transform_last_life(_cols(df, 0, 40), np.array([0, 40]), spec, [F.NEW_LIFE])
    good = codec.life_document(states[0], spec)
    assert codec.parse_life(good, spec).count == 40
    with pytest.raises(codec.InferenceError, match=message) as refused:
        codec.parse_life(change(good), spec)
    assert refused.value.status_code == 400


def test_a_summary_of_another_model_reads_as_none(fd002):
    _, df, spec = fd002
    _, states = F.transform_last_life(_cols(df, 0, 40), np.array([0, 40]), spec, [F.NEW_LIFE])
    doc = {**codec.life_document(states[0], spec), "model": "0" * 16}
    assert codec.parse_life(doc, spec) is None
    assert codec.parse_life({}, spec) is F.NEW_LIFE


# ------------------------------------------------------------------------------------------ served
@pytest.fixture(scope="module")
def refit(fd001_refit):
    """The FD001 final model as the pipeline makes it (refit on train+validation, calibrated)."""
    return I.model_fn(str(fd001_refit))



def _ask(model, *instances):
    status, out, _ = I.handle(model, json.dumps({"instances": list(instances)}).encode(), codec.JSON, codec.JSON)
    return status, json.loads(out)


@pytest.mark.parametrize("key", ["first", "last", "t", "tt", "z"])
def test_a_summary_number_too_large_for_a_float_is_a_400_naming_it(refit, units, key):
    """A 400-digit JSON integer in a summary field (or an element of ``z``): a 400 naming it, not a 500."""
    status, first = _ask(refit, {"asset_id": 3, "readings": units[3][:-20], "life": {}})
    life = first["predictions"][0]["life"]
    assert status == 200 and key in life
    if key == "z":
        life["z"][0] = "@big"
        message = f"instances[0].life.z: must be a list of {len(life['z'])} finite numbers"
    else:
        life[key] = "@big"
        message = f"instances[0].life.{key}: must be a finite number"
    body = json.dumps({"instances": [{"asset_id": 3, "readings": units[3][-30:], "life": life}]})
    status, out, _ = I.handle(refit, body.replace('"@big"', "9" * 400).encode(), codec.JSON, codec.JSON)
    assert status == 400 and json.loads(out) == {"error": message}


def test_served_whole_history_then_window_plus_summary_equals_the_batch(refit, units, fd001):
    """Start a summary with all but an engine's last 20 readings, then send its last 30 readings (10 of them
    sent before) with the summary:
    the answer is the batch model's on the whole history (life features included), the summary returned
    counts every reading once, and the interval comes from the life calibration."""
    model = refit
    assert model.intervals is not None and model.intervals.life is not None
    test = fd001["frames"]["test"]
    X = test[model.spec.feature_names].to_numpy(dtype=np.float32)  # whole histories: life features present
    with_life = np.clip(model.predictor.predict(X), 0, model.spec.label_cap)
    X[:, -len(F.life_names(model.spec)):] = np.nan
    without = np.clip(model.predictor.predict(X), 0, model.spec.label_cap)
    for u in (3, 31, 81):  # test engines with 100+ readings
        readings = units[u]
        assert len(readings) > 90
        status, first = _ask(model, {"asset_id": u, "readings": readings[:-20], "life": {}})
        assert status == 200
        life = first["predictions"][0]["life"]
        assert life["count"] == len(readings) - 20 and life["model"] == F.life_fingerprint(model.spec)
        status, doc = _ask(model, {"asset_id": u, "readings": readings[-30:][::-1], "life": life})
        pred = doc["predictions"][0]
        assert status == 200 and "warning" not in pred
        assert pred["rul"] == pytest.approx(with_life[u - 1], abs=1e-3) and pred["life"]["count"] == len(readings)
        lo, hi = model.intervals.life.interval(np.array([pred["rul"]]))
        assert (pred["rul_lower"], pred["rul_upper"]) == pytest.approx((lo[0], hi[0]), abs=2e-3)
        # the same window without a summary: the bounded answer, no life returned
        status, bare = _ask(model, {"asset_id": u, "readings": readings[-30:]})
        assert bare["predictions"][0]["rul"] == pytest.approx(without[u - 1], abs=1e-3)
        assert "life" not in bare["predictions"][0]
    # mixed: one asset with a summary, one without, in one request
    status, doc = _ask(model, {"asset_id": "a", "readings": units[3], "life": {}}, {"asset_id": "b", "readings": units[3]})
    assert [("life" in p) for p in doc["predictions"]] == [True, False]
    assert doc["predictions"][0]["rul"] == pytest.approx(with_life[2], abs=1e-3)
    assert doc["predictions"][1]["rul"] == pytest.approx(without[2], abs=1e-3)


def test_served_summary_problems(refit, units):
    model = refit
    status, doc = _ask(model, {"readings": units[5], "life": "start"})
    assert status == 400 and doc["error"].startswith("instances[0].life: must be an object")
    status, doc = _ask(model, {"readings": units[5], "life": {}})
    bad = {**doc["predictions"][0]["life"], "count": -1}
    status, doc = _ask(model, {"readings": units[5]}, {"readings": units[5], "life": bad})
    assert status == 400 and doc == {"error": "instances[1].life.count: must be a whole number from 1 to "
                                              "9007199254740992"}
    # finite numbers that no endpoint returned can overflow once the new readings are added: a 400, never
    # a 200 carrying infinities (which JSON cannot hold)
    forge = {**bad, "count": 5, "first": 1.0, "last": 10.0}  # the readings after cycle 10 are added
    for forged in ({**forge, "first": -1e308}, {**forge, "z": [1.7e308] * len(bad["z"])}):
        status, doc = _ask(model, {"readings": units[5][-30:], "life": forged})
        assert status == 400 and doc["error"].startswith("instances[0].life: its sums overflow"), doc
    other = {**bad, "count": 5, "model": "f" * 16}
    status, doc = _ask(model, {"readings": units[5][-30:], "life": other})
    pred = doc["predictions"][0]
    assert status == 200 and pred["warning"] == codec.LIFE_OTHER_MODEL and "life" not in pred
    status, doc = _ask(model, {"readings": units[5][-10:], "life": other})  # both warnings
    assert doc["predictions"][0]["warning"].endswith("; " + codec.LIFE_OTHER_MODEL)
    assert doc["predictions"][0]["warning"].startswith("10 reading(s) sent")


def _both(model, body: bytes) -> tuple[tuple, tuple]:
    """(status, body) of ``handle`` with the compiled reader and without it (the Python path)."""
    fast = I.handle(model, body, codec.JSON, codec.JSON)[:2]
    reader, model.reader = model.reader, None
    try:
        slow = I.handle(model, body, codec.JSON, codec.JSON)[:2]
    finally:
        model.reader = reader
    return fast, slow


def _stream_fleet(model, units: dict[int, list[dict]], seed: int) -> tuple[int, int]:
    """Every engine of ``units`` streamed as a stream application sends it: per round one request with every
    engine that has readings left, each instance its last readings before (enough for a full window) plus a
    new chunk of 1 to 50, with the summary its previous answer returned, and horizons as the stream sends them
    (odd rounds: some instances their own, one in two also the request's). Both paths answer every request byte for byte
    alike; the compiled reader reads every request (also those with assets short of a window); the last
    answers' summaries count every reading once. (rounds, rounds the compiled reader read)."""
    rng = np.random.default_rng(seed)
    keep = max((model.spec.min_readings or 1) - 1, 0)
    sent = dict.fromkeys(units, 0)
    life: dict[int, dict] = {u: {} for u in units}
    rounds = compiled = 0
    while any(sent[u] < len(units[u]) for u in units):
        instances = []
        asks = rounds % 2 == 1 and model.intervals is not None  # horizons in this round's request
        for u, readings in units.items():
            if sent[u] < len(readings):
                end = min(len(readings), sent[u] + int(rng.integers(1, 51)))
                instances.append({"asset_id": u, "readings": readings[max(0, sent[u] - keep):end], "life": life[u]})
                if asks and u % 3 == 0:  # its own horizon
                    instances[-1]["horizon"] = [30, 12.5, 0][u % 9 // 3]
                sent[u] = end
        doc = {"instances": instances, "horizon": 30} if asks and rounds % 4 == 1 else {"instances": instances}
        body = json.dumps(doc).encode()
        fast, slow = _both(model, body)
        assert fast == slow and fast[0] == 200, (rounds, fast[1][:300], slow[1][:300])
        got = model.reader.read(body)  # short of a window too: the same answer, the same warning
        assert got is not None
        compiled += 1
        for pred in json.loads(fast[1])["predictions"]:
            life[pred["asset_id"]] = pred["life"]
            assert ("failure_probability" in pred) == (asks and ("horizon" in doc or pred["asset_id"] % 3 == 0))
        rounds += 1
    assert all(life[u]["count"] == len(units[u]) for u in units)
    return rounds, compiled


def test_the_compiled_reader_answers_streamed_summaries_bit_for_bit(refit, units):
    """Every FD001 test engine streamed in chunks (1 to 50 new readings, with the readings before them a
    window needs, and the summary returned before): the compiled reader reads the summaries (it no longer
    declines them) and its answers equal the Python path's byte for byte."""
    if refit.reader is None:
        pytest.skip("no compiler here: the compiled reader is not built")
    rounds, compiled = _stream_fleet(refit, units, seed=0)
    assert compiled == rounds > 8  # the first rounds, with engines short of a window, too
    # one engine per request, each chunk sent twice (the repeat counts nothing twice)
    for u in (1, 50, 100):
        fast, slow = _both(refit, json.dumps({"instances": [{"asset_id": u, "readings": units[u][:40], "life": {}}]}).encode())
        doc = json.loads(fast[1])["predictions"][0]["life"]
        again = json.dumps({"instances": [{"asset_id": u, "readings": units[u][10:40], "life": doc}]}).encode()
        assert fast == slow and _both(refit, again)[0] == _both(refit, again)[1]
        assert json.loads(_both(refit, again)[0][1])["predictions"][0]["life"] == doc


def test_the_compiled_reader_answers_streamed_fd002_summaries_bit_for_bit(fd002_model, fd002_units):
    """The same on FD002 (six operating conditions, a health index channel): every test engine streamed."""
    model = I.model_fn(str(fd002_model))
    if model.reader is None:
        pytest.skip("no compiler here: the compiled reader is not built")
    assert model.spec.life_stats and model.spec.n_regimes == 6
    rounds, compiled = _stream_fleet(model, fd002_units, seed=1)
    assert compiled > rounds // 2 > 4


@pytest.mark.parametrize("change, message", MALFORMED)
def test_a_malformed_summary_gets_the_same_400_from_both_paths(refit, units, change, message):
    """The compiled reader declines every summary ``codec.parse_life`` refuses: the 400 (its message naming
    the key) is the Python path's, whichever path the model has."""
    _, first = _ask(refit, {"asset_id": 3, "readings": units[3][:-20], "life": {}})
    good = first["predictions"][0]["life"]
    instances = [{"asset_id": 2, "readings": units[2][-30:]},
                 {"asset_id": 3, "readings": units[3][-30:], "life": change(good)}]
    fast, slow = _both(refit, json.dumps({"instances": instances}).encode())
    assert fast == slow and fast[0] == 400
    assert re.match(message.replace("^life", r"^instances\[1\]\.life"), json.loads(fast[1])["error"])


def test_summaries_the_compiled_reader_leaves_to_python(refit, units):
    """Another model's summary (a warning), a repeated key, a forged summary that overflows: declined by the
    compiled reader, answered by the Python path (same bytes either way)."""
    if refit.reader is None:
        pytest.skip("no compiler here: the compiled reader is not built")
    _, first = _ask(refit, {"readings": units[3][:-20], "life": {}})
    good = first["predictions"][0]["life"]
    text = json.dumps({"readings": units[3][-30:], "life": good})
    bodies = [{"readings": units[3][-30:], "life": {**good, "model": "f" * 16}},
              {"readings": units[3][-30:], "life": {**good, "count": 5, "z": [1.7e308] * len(good["z"])}},
              {"readings": units[3][-30:], "life": {**good, "count": 2**53}}]
    raw = ['{"instances": [' + text.replace('"count":', '"count": 1, "count":') + "]}"]
    for body in [json.dumps({"instances": [b]}) for b in bodies] + raw:
        assert refit.reader.read(body.encode()) is None
        fast, slow = _both(refit, body.encode())
        assert fast == slow
    plain = json.dumps({"instances": [{"readings": units[7][-30:]}]}).encode()
    got = refit.reader.read(plain)  # no summary sent: the life features are missing, none is returned
    assert got is not None and np.isnan(got[1][0, -len(F.life_names(refit.spec)):]).all() and got[2] is None



def test_life_rows_marks_the_rows_that_carry_a_summary(fd002):
    """``life_rows``: True where any life feature is present, False where all are missing (the rows
    ``with_and_without_life`` blanks), and all False for a spec without life features."""
    _, df, spec = fd002
    k = len(F.life_names(spec))
    X = F.transform(df[df["unit"] <= 2], spec).to_numpy()[:4].copy()
    X[1, -k:] = np.nan  # a caller without a summary
    X[2, -1] = np.nan  # a summary with one statistic missing still counts as a summary
    assert F.life_rows(X, spec).tolist() == [True, False, True, True]
    X2, _ = F.with_and_without_life(X[[0]], np.zeros(1), spec)
    assert F.life_rows(X2, spec).tolist() == [True, False]
    assert F.life_rows(X[:0], spec).shape == (0,)
    no_life = F.FeatureSpec(**{**dataclasses.asdict(spec), "life_stats": []})
    assert not F.life_rows(X[:, :-k], no_life).any()
