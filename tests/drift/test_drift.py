"""Drift check on real C-MAPSS traffic: the baseline preprocess writes, capture records in
SageMaker's format, the decision on no-drift (FD001 test) and drift (FD002, a shifted sensor)
traffic, the local server's capture, `predmaint drift` and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from training_src import dataio, preprocess
from training_src import drift as D
from training_src import features as F
from training_src.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]


def _readings(data_dir: Path, subset: str, role: str = "test"):
    p = load_profile("cmapss", subset)
    return preprocess.read_readings(dataio.resolve_file(data_dir, p.file(role)), p)


def _write_capture(folder: Path, bodies: list[bytes]) -> Path:
    """Capture records as SageMaker writes them: .../AllTraffic/yyyy/mm/dd/hh/<file>.jsonl."""
    when = datetime(2026, 11, 30, 21, tzinfo=UTC)
    path = folder / "AllTraffic" / "2026/11/30/21" / "capture.jsonl"
    path.parent.mkdir(parents=True)
    with open(path, "w") as fh:
        for i, b in enumerate(bodies):
            fh.write(json.dumps(D.capture_record(b, "application/json", b"{}", "application/json",
                                                 f"id-{i}", when)) + "\n")
    return folder


@pytest.fixture(scope="module")
def model(fd001_model: Path):
    return D.load_model_files(fd001_model)


def test_preprocess_writes_a_small_baseline_beside_the_spec(fd001: dict, fd001_model: Path) -> None:
    out = fd001["out"]
    for where in ("train", "spec"):
        doc = D.load_baseline(out / where / D.BASELINE_FILE, fd001["spec"])
        assert doc["n_regimes"] == 1 and doc["bins"] == D.BINS
    assert (out / "spec" / D.BASELINE_FILE).stat().st_size < 200_000
    assert set(doc["raw"]) == set(D.raw_columns(fd001["spec"]))
    # the model artifact carries it (train.py copies it), so a check needs only the model
    assert (fd001_model / D.BASELINE_FILE).read_bytes() == (out / "train" / D.BASELINE_FILE).read_bytes()


def test_fd001_test_traffic_does_not_drift(model, data_dir: Path, tmp_path: Path) -> None:
    spec, baseline = model
    bodies = D.replay_bodies(_readings(data_dir, "FD001"), spec, np.random.default_rng(0), cut=False)
    result = D.check(_write_capture(tmp_path, bodies), spec, baseline)
    assert result["instances"] == 100 and result["refused_requests"] == 0 and result["tests"] > 50  # columns x regimes tested
    assert not result["drift"], result["drifted"]


def test_fd002_traffic_drifts_and_names_the_settings(model, data_dir: Path, tmp_path: Path) -> None:
    spec, baseline = model
    test2 = _readings(data_dir, "FD002")
    assets = list(test2["unit"].unique()[:50])
    bodies = D.replay_bodies(test2, spec, np.random.default_rng(0), assets=assets, cut=False)
    result = D.check(_write_capture(tmp_path, bodies), spec, baseline)
    names = {t["column"] for t in result["drifted"]}
    assert result["drift"] and {"setting_1", "setting_2"} <= names


def test_a_shifted_sensor_is_named(model, data_dir: Path) -> None:
    spec, baseline = model
    test1 = _readings(data_dir, "FD001")
    rng = np.random.default_rng(1)
    assets = list(rng.choice(test1["unit"].unique(), 40, replace=False))
    bodies = D.replay_bodies(test1, spec, rng, assets=assets, cut=False,
                             shift={"sensor_11": 2 * float(test1["sensor_11"].std())})
    traffic = D.decode_traffic((D.Captured(b, "application/json", None, "t") for b in bodies), spec)
    result = D.compare(baseline, traffic, spec)
    assert result["drift"]
    assert {t["column"].split("_")[0] + "_" + t["column"].split("_")[1] for t in result["drifted"]} == {"sensor_11"}


def test_psi_pvalue_is_calibrated_on_iid_samples() -> None:
    """Under no drift the PSI test's p-values are roughly uniform: about 1 % fall below 0.01."""
    rng = np.random.default_rng(0)
    base = D.sketch(rng.normal(size=20_000))
    edges = np.asarray(base["edges"])
    p = [D.psi_pvalue(D.psi(np.asarray(base["counts"]), np.bincount(D.bin_index(rng.normal(size=60), edges),
                                                                   minlength=len(edges) + 1)), 60, 20_000, 10)
         for _ in range(2000)]
    assert 0.002 < np.mean(np.asarray(p) < 0.01) < 0.03


def test_capture_reader_refuses_bad_records_with_file_and_line(model, tmp_path: Path) -> None:
    spec, baseline = model
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"captureData": {"endpointInput": {"data": "{}", "encoding": "JSON"}}}\nnot json\n')
    with pytest.raises(D.DriftError, match=r"bad.jsonl:2: not a JSON capture record"):
        D.check(bad, spec, baseline)
    bad.write_text('{"eventMetadata": {}}\n')
    with pytest.raises(D.DriftError, match=r"bad.jsonl:1: no captureData.endpointInput.data"):
        D.check(bad, spec, baseline)
    with pytest.raises(D.DriftError, match="no such capture folder"):
        D.check(tmp_path / "missing", spec, baseline)


GOOD_INPUT = {"observedContentType": "application/json", "mode": "INPUT", "data": "{}", "encoding": "JSON"}


@pytest.mark.parametrize("record,message", [
    ({"captureData": [GOOD_INPUT]}, "no captureData.endpointInput.data"),
    ({"captureData": {"endpointInput": [GOOD_INPUT]}}, "no captureData.endpointInput.data"),
    ({"captureData": {"endpointInput": {**GOOD_INPUT, "data": 5}}}, "no captureData.endpointInput.data"),
    ({"captureData": {"endpointInput": {**GOOD_INPUT, "encoding": "XML"}}}, "unknown endpointInput.encoding"),
    ({"captureData": {"endpointInput": {**GOOD_INPUT, "encoding": "BASE64", "data": "%%"}}}, "not valid base64"),
    ({"captureData": {"endpointInput": GOOD_INPUT}, "eventMetadata": "2026-11-30"}, "eventMetadata must be an object"),
    ({"captureData": {"endpointInput": GOOD_INPUT}, "eventMetadata": {"inferenceTime": "2026-11-30T21:00:00"}},
     "has no time zone"),
    ([GOOD_INPUT], "no captureData.endpointInput.data"),
    ("nested", "nested too deeply"),
])
def test_malformed_capture_shapes_are_refused_naming_file_and_line(model, tmp_path: Path, record, message) -> None:
    spec, baseline = model
    bad = tmp_path / "bad.jsonl"
    line = "[" * 100_000 + "]" * 100_000 if record == "nested" else json.dumps(record)
    bad.write_text(line + "\n")
    with pytest.raises(D.DriftError, match=rf"bad.jsonl:1: .*{message}"):
        D.check(bad, spec, baseline, since=datetime(2026, 1, 1, tzinfo=UTC))


def test_cli_drift_malformed_capture_and_an_unwritable_output_are_one_line_exit_2(fd001_model: Path,
                                                                               data_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PREDMAINT_HOME": str(tmp_path / "home")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "predmaint", "drift", "--model-dir", str(fd001_model),  # noqa: E731
                                     *a], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"captureData": {"endpointInput": GOOD_INPUT}, "eventMetadata": "x"}) + "\n")
    proc = run("--capture", str(bad))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "eventMetadata must be an object" in proc.stderr and "internal error" not in proc.stderr
    spec, _ = D.load_model_files(fd001_model)
    cap = _write_capture(tmp_path / "cap", D.replay_bodies(_readings(data_dir, "FD001"), spec,
                                                           np.random.default_rng(0), cut=False)[:2])
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = run("--capture", str(cap), "--output", str(afile / "out"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cannot write" in proc.stderr and "internal error" not in proc.stderr


def test_drift_output_on_a_full_disk_leaves_no_temporary_file(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes writes fail with EFBIG, as a full disk fails them with ENOSPC."""
    code = ("import resource, signal, sys; from pathlib import Path; from training_src import drift as D\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))\n"
            "try:\n    D.write_result(Path(sys.argv[1]), {'pad': 'x' * 10000})\n"
            "except D.DriftError as exc:\n    print(exc); sys.exit(2)\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "cannot write" in proc.stdout, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == []


def test_a_model_without_baseline_is_refused_saying_why(model, tmp_path: Path) -> None:
    spec, _ = model
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "feature_spec.json").write_text(spec.to_json())
    with pytest.raises(D.DriftError, match=r"no drift_baseline.json \(the model was trained before drift "
                                           r"baselines, or its data was preprocessed by a sampled fit"):
        D.load_model_files(folder)
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(folder / "feature_spec.json", arcname="feature_spec.json")
    with pytest.raises(D.DriftError, match=r"model.tar.gz: no drift_baseline.json in the model artifact \(the "):
        D.load_model_files(tmp_path / "model.tar.gz")


def test_refused_requests_are_counted_not_used(model, tmp_path: Path) -> None:
    spec, baseline = model
    result = D.check(_write_capture(tmp_path, [b'{"instances": []}', b"nope"]), spec, baseline)
    assert result["refused_requests"] == 2 and result["tests"] == 0 and not result["drift"]


def test_a_captured_summary_with_a_number_too_large_for_a_float_is_refused_not_a_crash(model, data_dir: Path,
                                                                                        tmp_path: Path) -> None:
    spec, baseline = model
    assert spec.life_stats
    readings = _readings(data_dir, "FD001")
    rows = readings[readings["unit"] == 1].drop(columns=["unit"]).head(40).to_dict("records")
    keys = F.sum_keys(spec.life_stats)
    width = len(spec.channels)
    life = {"model": F.life_fingerprint(spec), "first": "@big", "last": 5.0, "count": 5,
            **{k: 0.0 if k in F.LIFE_SCALARS else [0.0] * width for k in keys}}
    forged = json.dumps({"instances": [{"asset_id": 1, "readings": rows, "life": life}]})
    good = json.dumps({"instances": [{"asset_id": 1, "readings": rows}]})
    result = D.check(_write_capture(tmp_path, [forged.replace('"@big"', "9" * 400).encode(), good.encode()]),
                     spec, baseline)
    assert result["refused_requests"] == 1


def test_processing_entrypoint_reads_model_tarball(fd001_model: Path, data_dir: Path, tmp_path: Path) -> None:
    spec, _ = D.load_model_files(fd001_model)
    model_in = tmp_path / "model"
    model_in.mkdir()
    with tarfile.open(model_in / "model.tar.gz", "w:gz") as tar:
        for f in fd001_model.iterdir():
            tar.add(f, arcname=f.name)
    bodies = D.replay_bodies(_readings(data_dir, "FD001"), spec, np.random.default_rng(0), cut=False)
    cap = _write_capture(tmp_path / "capture", bodies)
    code = D.main(["--capture-dir", str(cap), "--model", str(model_in), "--output-dir", str(tmp_path / "out")])
    assert code == 0
    result = json.loads((tmp_path / "out" / D.RESULT_FILE).read_text())
    assert result["format"] == D.RESULT_FORMAT and result["metric"] == 0


def test_local_capture_writer_uses_sagemaker_layout_and_sampling(tmp_path: Path) -> None:
    from predmaint import deployment
    from predmaint.capture import CaptureWriter

    assert deployment.load(REPO / "cdk.json").endpoint.data_capture_percent == json.loads(
        (REPO / "cdk.json").read_text())["context"]["predmaint"]["endpoint"]["data_capture_percent"]
    w = CaptureWriter(tmp_path, 30, seed=0)
    for _ in range(1000):
        w.record(b'{"instances": []}', "application/json", b'{"error": "x"}', b"application/json")
    w.flush()
    files = list(tmp_path.rglob("*.jsonl"))
    assert len(files) == 1 and files[0].relative_to(tmp_path).parts[0] == "AllTraffic"
    lines = files[0].read_text().splitlines()
    assert 230 < len(lines) < 370
    rec = json.loads(lines[0])
    assert rec["captureData"]["endpointInput"] == {"observedContentType": "application/json", "mode": "INPUT",
                                                   "data": '{"instances": []}', "encoding": "JSON"}
    assert rec["eventVersion"] == "0" and rec["eventMetadata"]["inferenceTime"].endswith("Z")


def test_cli_drift_names_features_and_refuses_bad_input(fd001_model: Path, data_dir: Path, tmp_path: Path) -> None:
    spec, _ = D.load_model_files(fd001_model)
    test1 = _readings(data_dir, "FD001")
    rng = np.random.default_rng(2)
    bodies = D.replay_bodies(test1, spec, rng, assets=list(test1["unit"].unique()[:40]), cut=False,
                             shift={"sensor_11": 2 * float(test1["sensor_11"].std())})
    cap = _write_capture(tmp_path / "cap", bodies)
    env = {**os.environ, "PREDMAINT_HOME": str(tmp_path / "home")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "predmaint", "drift", *a], cwd=REPO, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    proc = run("--model-dir", str(fd001_model), "--capture", str(cap))
    assert proc.returncode == 0, proc.stderr
    assert "DRIFT" in proc.stdout and "sensor_11" in proc.stdout and "drift: yes" in proc.stdout
    proc = run("--model-dir", str(fd001_model), "--capture", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "nowhere" in proc.stderr


def test_cli_drift_thresholds_default_to_the_deployments(fd001_model: Path, data_dir: Path, tmp_path: Path) -> None:
    """`predmaint drift` decides with cdk.json's predmaint.drift thresholds (what the scheduled job
    deploys with), the rule's own defaults where cdk.json sets none, and the options over both."""
    bodies = D.replay_bodies(_readings(data_dir, "FD001"), D.load_model_files(fd001_model)[0],
                             np.random.default_rng(0), cut=False)[:40]
    cap = _write_capture(tmp_path / "cap", bodies)
    doc = json.loads((REPO / "cdk.json").read_text())
    doc["context"]["predmaint"]["drift"]["psi_threshold"] = 0.4
    cdk = tmp_path / "cdk.json"
    cdk.write_text(json.dumps(doc))
    env = {**os.environ, "PREDMAINT_HOME": str(tmp_path / "home"), "PREDMAINT_CDK_JSON": str(cdk)}

    def settings(*extra: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "predmaint", "drift", "--model-dir", str(fd001_model),
                               "--capture", str(cap), "--json", *extra], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["settings"]

    got = settings()
    assert (got["psi_threshold"], got["alpha"], got["min_samples"]) == (0.4, D.ALPHA, D.MIN_SAMPLES)
    got = settings("--psi-threshold", "0.3", "--alpha", "0.01", "--min-samples", "5")
    assert (got["psi_threshold"], got["alpha"], got["min_samples"]) == (0.3, 0.01, 5)
    proc = subprocess.run([sys.executable, "-m", "predmaint", "drift", "--model-dir", str(fd001_model),
                           "--capture", str(cap), "--alpha", "1.5"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "predmaint drift: error: --alpha must lie strictly between 0 and 1, got 1.5"


def test_local_server_captures_what_it_answered(fd001_model: Path, data_dir: Path, tmp_path: Path) -> None:
    """The server's /invocations (the ASGI app gunicorn's workers run) writes one capture record per
    request, which the drift check reads back with the same features."""
    import asyncio

    from predmaint.capture import CaptureWriter
    from predmaint.server import InferenceApp

    spec, _ = D.load_model_files(fd001_model)
    bodies = D.replay_bodies(_readings(data_dir, "FD001"), spec, np.random.default_rng(0), cut=False)[:3]
    app = InferenceApp(fd001_model, capture=CaptureWriter(tmp_path / "cap", 100))
    app.load()
    sent: list[dict] = []

    async def call(body: bytes) -> None:
        scope = {"type": "http", "method": "POST", "path": "/invocations",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            return messages.pop(0)

        async def send(msg: dict) -> None:
            sent.append(msg)
        await app(scope, receive, send)

    for b in bodies:
        asyncio.run(call(b))
    app.capture.flush()
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200, 200, 200]
    lines = [json.loads(x) for f in (tmp_path / "cap").rglob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(lines) == 3
    assert json.loads(lines[0]["captureData"]["endpointOutput"]["data"])["predictions"]
    traffic = D.decode_traffic(D.read_captures(D.capture_files(tmp_path / "cap")), spec)
    assert traffic.requests == 3 and traffic.refused == 0 and len(traffic.feature_regime) == 30


def test_serve_captures_a_laptops_share_unless_told(tmp_path: Path) -> None:
    """Locally, not cdk.json's 100 % (the deployed endpoint's, into S3): 10 % and at most 256 MB."""
    import argparse

    from predmaint import cli, deployment
    from predmaint.capture import LOCAL_MAX_MB, LOCAL_PERCENT, capture_root

    writer = cli._capture_writer(argparse.Namespace(capture_percent=None, capture_max_mb=None, home=tmp_path))
    assert (writer.percent, writer.max_bytes) == (LOCAL_PERCENT, LOCAL_MAX_MB * 2**20) == (10, 256 * 2**20)
    assert writer.percent < deployment.load().endpoint.data_capture_percent and writer.root == capture_root(tmp_path) / "AllTraffic"
    writer = cli._capture_writer(argparse.Namespace(capture_percent=100, capture_max_mb=2, home=tmp_path))
    assert (writer.percent, writer.max_bytes) == (100, 2 * 2**20)
    assert cli._capture_writer(argparse.Namespace(capture_percent=0, home=tmp_path)) is None
    bad = tmp_path / "cdk.json"
    bad.write_text(json.dumps({"context": {"predmaint": {"endpoint": {"data_capture_percent": 150}}}}))
    from predmaint.errors import UsageError
    with pytest.raises(UsageError, match=r"predmaint\.endpoint\.data_capture_percent: must be a number in 0\.\.100"):
        deployment.load(bad)


def test_local_capture_rotates_and_stays_under_its_bound(tmp_path: Path) -> None:
    from predmaint.capture import CaptureWriter

    w = CaptureWriter(tmp_path, 100, max_bytes=64 * 1024)
    body = json.dumps({"instances": [{"asset_id": "a", "readings": [{"cycle": i} for i in range(40)]}]}).encode()
    for _ in range(600):  # ~600 records of ~1 KB: ten times the bound
        w.record(body, "application/json", b'{"predictions": []}', b"application/json")
        w.flush()
    files = list(tmp_path.rglob("*.jsonl"))
    assert len(files) > 1  # rotated
    assert sum(f.stat().st_size for f in files) <= 64 * 1024
    for f in files:  # whole records only
        assert all(json.loads(line)["captureData"] for line in f.read_text().splitlines())


def test_local_capture_writes_off_the_request_path(tmp_path: Path, monkeypatch) -> None:
    """``record`` (called by the server after each answer) only queues: the record is built and written
    by the writer's thread, never by the caller."""
    import threading

    from predmaint import capture

    builders: list[str] = []
    real = capture.capture_record

    def spy(*args, **kwargs):
        builders.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(capture, "capture_record", spy)
    w = capture.CaptureWriter(tmp_path, 100)
    for _ in range(5):
        w.record(b'{"instances": []}', "application/json", b'{"error": "x"}', b"application/json")
    w.flush()
    assert builders == ["capture"] * 5


def test_local_capture_holds_a_bounded_number_of_bytes_while_its_writer_is_behind(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """A writer stuck (slow disk) while large requests keep coming: the queue keeps at most QUEUE_BYTES of
    bodies and drops the rest, so the worker's memory does not grow with the backlog."""
    import threading

    from predmaint import capture

    release = threading.Event()
    real = capture.capture_record

    def stuck(*args, **kwargs):
        release.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(capture, "capture_record", stuck)
    w = capture.CaptureWriter(tmp_path, 100)
    body = b'{"instances": [], "pad": "' + b"x" * 2**20 + b'"}'
    for _ in range(64):  # 64 MiB offered
        w.record(body, "application/json", b"{}", b"application/json")
        assert w._queued <= capture.QUEUE_BYTES
    release.set()
    w.flush()
    written = sum(len(f.read_text().splitlines()) for f in tmp_path.rglob("*.jsonl"))
    assert 1 <= written <= capture.QUEUE_BYTES // 2**20 + 1


def test_drift_refuses_the_life_summaries_the_endpoint_refuses(fd001_model: Path, data_dir: Path) -> None:
    """A summary whose sums overflow with the readings sent: the endpoint answers 400, so the drift check
    counts the request as refused, not as usable traffic."""
    from training_src import inference

    spec, _ = D.load_model_files(fd001_model)
    if not spec.life_stats:
        pytest.skip("this model reads no life summary")
    model = inference.model_fn(str(fd001_model))
    body = D.replay_bodies(_readings(data_dir, "FD001"), spec, np.random.default_rng(0), cut=False, per_request=1)[0]
    doc = json.loads(body)
    doc["instances"][0]["life"] = {}
    status, out, _ = inference.handle(model, json.dumps(doc).encode(), "application/json", None)
    assert status == 200
    life = json.loads(out)["predictions"][0]["life"]
    forged = {k: (v if k in ("model", "count", "first", "last") else
                  [1e308] * len(v) if isinstance(v, list) else 1e308) for k, v in life.items()}
    doc["instances"][0]["life"] = forged
    forged_body = json.dumps(doc).encode()
    status, out, _ = inference.handle(model, forged_body, "application/json", None)
    assert status == 400 and b"overflow" in out, out
    traffic = D.decode_traffic([D.Captured(forged_body, "application/json", None, "x:1")], spec)
    assert (traffic.requests, traffic.refused) == (1, 1)
