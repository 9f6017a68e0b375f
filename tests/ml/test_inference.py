"""inference.py on a real trained artifact: predictions, explanations and every error status."""

import json
from typing import Any

import numpy as np
import pytest

from training_src import features as F
from training_src import inference as I
from training_src.predmaint_serving import codec, predictors


@pytest.fixture(scope="module")
def model(fd001_model):
    return I.model_fn(str(fd001_model))



def body(instances, **extra):
    return json.dumps({"instances": instances, **extra}).encode()


def test_predictions_match_batch_features(model, units, fd001):
    test = fd001["frames"]["test"]
    X = test[model.spec.feature_names].to_numpy(dtype=np.float32)
    X[:, -len(F.life_names(model.spec)):] = np.nan  # no life summary sent: those features are missing
    expected = np.clip(model.predictor.predict(X), 0, 125)
    # the history the features need (spec.history_needed readings), in reverse order, in two
    # requests (all 100 full histories together exceed the 6 MB body limit)
    h = model.spec.history_needed
    req = [{"asset_id": f"engine-{u}", "readings": units[u][-h:][::-1]} for u in range(1, 101)]
    doc = {"predictions": []}
    for part in (req[:50], req[50:]):
        status, out, ctype = I.handle(model, body(part), "application/json", "application/json")
        assert status == 200 and ctype == "application/json"
        got = json.loads(out)
        doc["predictions"] += got["predictions"]
        doc["model_version"] = got["model_version"]
    assert [p["asset_id"] for p in doc["predictions"]] == [f"engine-{u}" for u in range(1, 101)]
    np.testing.assert_allclose([p["rul"] for p in doc["predictions"]], expected, atol=1e-3)
    assert doc["model_version"].startswith("xgboost-")


def test_explain_adds_top_contributions(model, units):
    status, out, _ = I.handle(model, body([{"asset_id": "e", "readings": units[3]}]), "application/json", None,
                              "explain=true")
    pred = json.loads(out)["predictions"][0]
    assert status == 200 and len(pred["contributions"]) == predictors.TOP_CONTRIBUTIONS
    mags = [abs(c["contribution"]) for c in pred["contributions"]]
    assert mags == sorted(mags, reverse=True) and pred["contributions"][0]["feature"] in model.spec.feature_names
    status, out, _ = I.handle(model, body([{"asset_id": "e", "readings": units[3]}], explain=True),
                              "application/json", None)
    assert "contributions" in json.loads(out)["predictions"][0]


def reading(units, **change):
    r = dict(units[1][0])
    r.update(change)
    return r


@pytest.mark.parametrize("make, status, fragment", [
    (lambda u: b"{not json", 400, "malformed JSON"),
    (lambda u: b'{"instances": [{"readings": [{"cycle": NaN}]}]}', 400, "malformed JSON"),
    (lambda u: b"[1, 2]", 400, "must be a JSON object"),
    (lambda u: body([]), 400, "instances: empty"),
    (lambda u: body([{"asset_id": "a", "readings": []}]), 400, "instances[0].readings: empty"),
    (lambda u: body([{"asset_id": "a"}]), 400, "instances[0].readings: required"),
    (lambda u: body([{"asset_id": "a", "readings": [reading(u, sensor_2="hot")]}]), 400,
     "instances[0].readings[0].sensor_2: expected a number, got str"),
    (lambda u: body([{"asset_id": "a", "readings": [{k: v for k, v in reading(u).items() if k != "sensor_7"}]}]),
     400, "instances[0].readings[0].sensor_7: missing"),
    (lambda u: body([{"asset_id": "a", "readings": [reading(u, sensor_3=1e400)]}]), 400, "malformed JSON"),
    (lambda u: body([{"asset_id": "a", "readings": [reading(u), reading(u)]}]), 400, "duplicate cycle 1"),
    (lambda u: body([{"asset_id": True, "readings": [reading(u)]}]), 400, "asset_id"),
    (lambda u: body([{"asset_id": "a", "readings": [reading(u)]}] * (codec.MAX_INSTANCES + 1)), 413, "at most"),
])
def test_bad_requests_get_4xx_json(model, units, make, status, fragment):
    got, out, ctype = I.handle(model, make(units), "application/json", None)
    assert got == status and ctype == "application/json"
    assert fragment in json.loads(out)["error"]


def test_content_negotiation(model, units):
    ok = body([{"asset_id": "a", "readings": units[1]}])
    def refused(*args: Any) -> tuple[int, str]:
        status, out, _ = I.handle(model, *args)
        return status, json.loads(out)["error"]

    status, error = refused(ok, "text/csv", None)
    assert status == 415 and "unsupported Content-Type 'text/csv'" in error
    status, error = refused(ok, "application/json", "text/csv")
    assert status == 406 and "Accept" in error and "text/csv" in error
    assert I.handle(model, ok, "application/json; charset=utf-8", "*/*")[0] == 200
    big = b" " * (codec.MAX_BODY_BYTES + 1)
    assert refused(big, "application/json", None) == (413, f"body of {codec.MAX_BODY_BYTES + 1} bytes exceeds "
                                                           f"{codec.MAX_BODY_BYTES}")


def test_corrupt_model_fails_loudly(fd001_model, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(fd001_model, broken)
    (broken / "xgboost-model").write_bytes(b"garbage")
    import xgboost

    with pytest.raises(xgboost.core.XGBoostError, match="garbage"):  # xgboost's parser quotes what it read
        I.model_fn(str(broken))
    (broken / "xgboost-model").unlink()
    with pytest.raises(FileNotFoundError, match="xgboost-model"):
        I.model_fn(str(broken))


def test_str_bodies_take_the_compiled_reader(model, units):
    """sagemaker-containers hands JSON bodies to input_fn as str: the compiled reader answers them, in
    the container's hooks and in handle, with the same answer as for the bytes."""
    if model.reader is None:
        pytest.skip("no C compiler here: no compiled reader")
    raw = body([{"asset_id": "e", "readings": units[4]}])
    calls = []
    read = model.reader.read
    model.reader.read = lambda b: calls.append(read(b) is not None) or read(b)
    try:
        answer = I.output_fn(I.predict_fn(I.input_fn(raw.decode(), "application/json"), model), "application/json")
        assert I.handle(model, raw.decode(), "application/json", None) == (200, answer[0], answer[1])
        assert I.handle(model, raw, "application/json", None) == (200, answer[0], answer[1])
    finally:
        del model.reader.read
    assert calls == [True, True, True]


def test_container_hooks_answer_refusals_with_their_status(model, units):
    """Outside the container output_fn has no response class: a refusal raises InferenceError with the
    status the container's worker.Response carries (tests/container serve the real one)."""
    for raw, ctype, accept, status in [(b"{not json", "application/json", None, 400),
                                       (b"{}", "text/plain", None, 415),
                                       (body([{"asset_id": "a", "readings": units[1]}]), "application/json",
                                        "text/csv", 406)]:
        with pytest.raises(codec.InferenceError) as err:
            I.output_fn(I.predict_fn(I.input_fn(raw, ctype), model), accept)
        assert err.value.status_code == status
