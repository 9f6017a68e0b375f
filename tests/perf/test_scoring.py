"""Fleet scoring: same numbers as the batch features, any row order, CLI contract, Batch Transform request."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from predmaint import cli, scoring
from training_src import features as F
from training_src.dataio import read_table, resolve_file


@pytest.fixture(scope="module")
def loaded(fd001_perf):
    return scoring.load_model(fd001_perf["model_dir"])


@pytest.fixture(scope="module")
def raw_test(data_dir, fd001_perf):
    p = fd001_perf["profile"]
    return read_table(resolve_file(data_dir, p.file("test")), p, allow_label=False)


def _expected(raw, spec, module, model, life: bool = False):
    df = F.validate_readings(raw, spec.profile_obj)
    ids = df["unit"].to_numpy()
    last = np.flatnonzero(np.r_[ids[1:] != ids[:-1], True])
    X = F.transform(df, spec, life=life).to_numpy(dtype=np.float32)[last]
    return [int(u) for u in ids[last]], module.predict_matrix(model, X)


def test_whole_histories_score_with_each_assets_life_summary(loaded, raw_test):
    """The test files hold whole histories: with --whole-histories each asset's life features are those of
    its whole history (the batch features), in any row order; without, they are missing."""
    module, model = loaded
    assert model.spec.life_stats
    ids, preds = scoring.score_frame(raw_test.sample(frac=1, random_state=5), module, model, whole_histories=True)
    want_ids, want = _expected(raw_test, model.spec, module, model, life=True)
    assert dict(zip(ids, preds, strict=True)) == dict(zip(want_ids, want, strict=True))
    _, bare = _expected(raw_test, model.spec, module, model)
    assert not np.array_equal(want, bare)  # the summary changes the answers
    lines = scoring.to_request_lines(raw_test, model.spec, assets_per_line=40, whole_histories=True)
    assert all(inst["life"] == {} for line in lines for inst in json.loads(line)["instances"])


def test_scores_equal_batch_features_prediction(loaded, raw_test):
    module, model = loaded
    ids, preds = scoring.score_frame(raw_test, module, model)
    want_ids, want = _expected(raw_test, model.spec, module, model)
    assert ids == want_ids and len(ids) == 100
    np.testing.assert_array_equal(preds, want)


def test_row_order_does_not_matter(loaded, raw_test):
    module, model = loaded
    shuffled = raw_test.sample(frac=1, random_state=3).reset_index(drop=True)
    ids, preds = scoring.score_frame(shuffled, module, model)
    base_ids, base = scoring.score_frame(raw_test, module, model)
    assert dict(zip(ids, preds, strict=True)) == dict(zip(base_ids, base, strict=True))


def test_small_chunks_change_nothing(loaded, raw_test):
    module, model = loaded
    a = scoring.score_frame(raw_test, module, model, chunk=7)[1]
    np.testing.assert_array_equal(a, scoring.score_frame(raw_test, module, model)[1])


def test_gaps_are_filled_like_the_batch_path(loaded, raw_test):
    module, model = loaded
    gappy = raw_test.copy()
    gappy.loc[[5, 300, 301], "sensor_3"] = np.nan  # short gaps: filled with the previous reading
    ids, preds = scoring.score_frame(gappy, module, model)
    want_ids, want = _expected(gappy, model.spec, module, model)
    assert ids == want_ids
    np.testing.assert_array_equal(preds, want)


def test_long_gap_is_refused_with_row_and_column(loaded, raw_test):
    module, model = loaded
    bad = raw_test.copy()
    bad.loc[10:15, "sensor_7"] = np.nan
    with pytest.raises(ValueError, match=r"sensor_7.*gap of more than 3"):  # the artifact's FeatureError
        scoring.score_frame(bad, module, model)


def test_cli_score_raw_and_csv_files(fd001_perf, data_dir, raw_test, tmp_path, capsys):
    p = fd001_perf["profile"]
    src = resolve_file(data_dir, p.file("test"))
    out = tmp_path / "scores.csv"
    code = cli.main(["--home", str(tmp_path / "home"), "score", "--model-dir", str(fd001_perf["model_dir"]),
                     "--input", str(src), "--output", str(out)])
    assert code == 0 and capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["asset_id", "rul"] and len(scores) == 100
    # the same fleet as a headed CSV in another order, JSON lines out
    csv_in = tmp_path / "fleet.csv"
    raw_test.sample(frac=1, random_state=1).to_csv(csv_in, index=False)
    out2 = tmp_path / "scores.jsonl"
    assert cli.main(["--home", str(tmp_path / "home"), "score", "--model-dir", str(fd001_perf["model_dir"]),
                     "--input", str(csv_in), "--output", str(out2)]) == 0
    lines = [json.loads(x) for x in out2.read_text().splitlines()]
    got = {d["asset_id"]: d["rul"] for d in lines}
    assert got == dict(zip(scores["asset_id"], scores["rul"], strict=True))
    # --whole-histories: the life summaries of the test engines' whole histories (other scores)
    out3 = tmp_path / "life.csv"
    assert cli.main(["--home", str(tmp_path / "home"), "score", "--model-dir", str(fd001_perf["model_dir"]),
                     "--input", str(src), "--output", str(out3), "--whole-histories"]) == 0
    life = pd.read_csv(out3)
    assert list(life["asset_id"]) == list(scores["asset_id"]) and not np.allclose(life["rul"], scores["rul"])


def test_cli_score_usage_errors(fd001_perf, tmp_path, capsys):
    base = ["--home", str(tmp_path / "home"), "score", "--model-dir", str(fd001_perf["model_dir"])]
    assert cli.main([*base, "--input", str(tmp_path / "nope.txt"), "--output", str(tmp_path / "o.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("unit,cycle\n1,1\n")
    assert cli.main([*base, "--input", str(bad), "--output", str(tmp_path / "o.csv")]) == 2
    assert cli.main([*base, "--batch-transform", "--input", "s3://b/in/", "--output", "s3://b/out/"]) == 2
    assert "--model-name" in capsys.readouterr().err


def test_batch_transform_request_and_the_container_answer(loaded, raw_test):
    """The CreateTransformJob call (stubbed), and what the container's hooks answer for the input lines."""
    import boto3
    from botocore.stub import Stubber

    module, model = loaded
    request = scoring.batch_transform_request("predmaint-model", "s3://bucket/fleet/", "s3://bucket/scores/",
                                              job_name="score-1")
    assert request["TransformInput"]["SplitType"] == "Line" and request["BatchStrategy"] == "MultiRecord"
    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("create_transform_job", {"TransformJobArn": "arn:aws:sagemaker:eu-west-1:1:transform-job/score-1"},
                          request)
        arn = scoring.start_batch_transform(client, model_name="predmaint-model", input_s3="s3://bucket/fleet/",
                                            output_s3="s3://bucket/scores/", job_name="score-1")
        stub.assert_no_pending_responses()
    assert arn.endswith("transform-job/score-1")
    with pytest.raises(Exception, match="s3://"):
        scoring.batch_transform_request("m", "/local/path", "s3://b/o/")
    # each input line is one request the container's hooks answer like the endpoint (the container
    # hands JSON bodies over as str)
    from training_src import inference as I

    lines = scoring.to_request_lines(raw_test, model.spec, assets_per_line=40)
    assert len(lines) == 3
    got = {}
    for line in lines:
        body, ctype = I.output_fn(I.predict_fn(I.input_fn(line, "application/json"), model), "application/json")
        assert ctype == "application/json"
        got.update({p["asset_id"]: p["rul"] for p in json.loads(body)["predictions"]})
    ids, preds = scoring.score_frame(raw_test, module, model)
    assert got == {i: round(float(v), 3) for i, v in zip(ids, preds, strict=True)}
