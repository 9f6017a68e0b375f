"""``predmaint data``: download, extraction, verification and atomicity, against a local HTTP server.

The machine running the tests has no internet, so the official archives are replaced by tiny
synthetic ones built here with the same structure (NASA: CMAPSSData.zip nested in an outer zip;
UCI: a zip holding ai4i2020.csv) and the expected hashes are injected through ``hashes=``.
The real published hashes are checked against the real files (``PREDMAINT_DATA_DIR``, as CI sets it).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import shutil
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from predmaint import data as D

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------
# Synthetic archives and a scriptable local server
# ----------------------------------------------------------------------------------------------
def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _cmapss_files() -> dict[str, bytes]:
    out = {}
    for i in range(1, 5):
        out[f"train_FD00{i}.txt"] = f"1 1 -0.0007 -0.0004 100.0 518.67 64{i}.82  \n1 2 0.0 0.0 100.0 518.67 642.1  \n".encode()
        out[f"test_FD00{i}.txt"] = f"1 1 0.0023 0.0003 100.0 518.67 643.0{i}  \n".encode()
        out[f"RUL_FD00{i}.txt"] = f"11{i} \n".encode()
    return out


AI4I = "\ufeffUDI,Product ID,Type\r\n1,M14860,M\r\n2,L47181,L\r\n".encode()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _nasa_archive(files: dict[str, bytes]) -> bytes:
    """Like NASA's download: an outer zip whose folder holds CMAPSSData.zip plus a PDF."""
    inner = _zip({**files, "readme.txt": b"Data Set: FD001\n"})
    return _zip({"6. Turbofan Engine Degradation Simulation Data Set/CMAPSSData.zip": inner,
                 "6. Turbofan Engine Degradation Simulation Data Set/Damage Propagation Modeling.pdf": b"%PDF-1.4",
                 "__MACOSX/6. Turbofan Engine Degradation Simulation Data Set/._CMAPSSData.zip": b"junk"})


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    fail_first: int = 0  # answer 503 to this many requests first
    truncate: bool = False  # announce the full length, send half, close
    hits: int = 0


@dataclass
class Server:
    url: str
    routes: dict[str, Route] = field(default_factory=dict)

    def add(self, path: str, **kw) -> str:
        self.routes[path] = Route(**kw)
        return self.url + path


@pytest.fixture
def server() -> Iterator[Server]:
    routes: dict[str, Route] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            route.hits += 1
            if route.hits <= route.fail_first:
                self.send_error(503)
                return
            if route.status != 200:
                self.send_error(route.status)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if route.truncate:
                self.wfile.write(route.body[: len(route.body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(route.body)

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", routes)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def fleet(server: Server) -> tuple[dict, dict, dict[str, bytes]]:
    """Sources pointing at the local server, hashes of the synthetic FD001/AI4I files, and contents."""
    files = _cmapss_files()
    cm_url = server.add("/nasa/turbofan.zip", body=_nasa_archive(files))
    ai_url = server.add("/uci/601.zip", body=_zip({"ai4i2020.csv": AI4I}))
    sources = {"cmapss": replace(D.SOURCES["cmapss"], urls=(cm_url,)),
               "ai4i2020": replace(D.SOURCES["ai4i2020"], urls=(ai_url,))}
    hashes = {f"cmapss/{n}": _sha(files[n]) for n in ("train_FD001.txt", "test_FD001.txt", "RUL_FD001.txt")}
    hashes["ai4i2020/ai4i2020.csv"] = _sha(AI4I)
    contents = {f"cmapss/{n}": b for n, b in files.items()} | {"ai4i2020/ai4i2020.csv": AI4I}
    return sources, hashes, contents


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


FAST = {"timeout": 5.0, "attempts": 3, "backoff": 0.01}


# ----------------------------------------------------------------------------------------------
# Download
# ----------------------------------------------------------------------------------------------
def test_download_writes_verified_gzip_files_like_shared_data(tmp_path, fleet, capsys):
    sources, hashes, contents = fleet
    results = D.download(tmp_path, sources=sources, hashes=hashes, **FAST)

    assert len(results) == 13
    for rel, content in contents.items():
        gz = tmp_path / f"{rel}.gz"
        raw = gz.read_bytes()
        assert gzip.decompress(raw) == content
        # gzip -9 -n equivalent: FLG=0 (no name), MTIME=0, XFL=2 (max compression)
        assert raw[3] == 0 and raw[4:8] == b"\0\0\0\0" and raw[8] == 2
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
            g.write(content)
        assert raw == buf.getvalue()
    verified = {r.relative for r in results if r.verified}
    assert verified == set(hashes)
    unverified = [r for r in results if not r.verified]
    assert {r.relative for r in unverified} == {f"cmapss/{k}_FD00{i}.txt" for i in (2, 3, 4)
                                                 for k in ("train", "test", "RUL")}
    assert all(r.sha256 == _sha(contents[r.relative]) for r in results)
    # Nothing but the data and the manifests; no staging leftovers, no archive.
    assert [p for p in _listing(tmp_path) if not p.endswith(".gz")] == [
        "ai4i2020", "ai4i2020/MANIFEST.json", "cmapss", "cmapss/MANIFEST.json"]
    manifest = D._read_manifest(tmp_path, "cmapss")
    assert manifest["files"]["train_FD002.txt"]["verified"] is False
    assert manifest["files"]["train_FD002.txt"]["sha256"] == _sha(contents["cmapss/train_FD002.txt"])
    assert manifest["files"]["train_FD001.txt"]["verified"] is True
    assert D.verify(tmp_path, hashes=hashes, sources=sources) == []
    err = capsys.readouterr().err
    assert "GET " + sources["cmapss"].urls[0] in err and "downloaded" in err  # progress indication


def test_second_run_skips_present_verified_files(tmp_path, server, fleet):
    sources, hashes, _ = fleet
    D.download(tmp_path, sources=sources, hashes=hashes, **FAST)
    hits = {p: r.hits for p, r in server.routes.items()}
    results = D.download(tmp_path, sources=sources, hashes=hashes, **FAST)
    assert {p: r.hits for p, r in server.routes.items()} == hits  # no request at all
    assert {r.action for r in results} == {"kept"}
    assert sum(r.verified for r in results) == 4


def test_plain_files_count_as_present(tmp_path, server, fleet):
    sources, hashes, contents = fleet
    (tmp_path / "ai4i2020").mkdir()
    (tmp_path / "ai4i2020" / "ai4i2020.csv").write_bytes(contents["ai4i2020/ai4i2020.csv"])
    results = D.download(tmp_path, ["ai4i2020"], sources=sources, hashes=hashes, **FAST)
    assert server.routes["/uci/601.zip"].hits == 0
    assert results[0].action == "kept" and results[0].verified


def test_corrupted_file_is_downloaded_again_and_stale_plain_copy_removed(tmp_path, server, fleet):
    sources, hashes, contents = fleet
    D.download(tmp_path, ["ai4i2020"], sources=sources, hashes=hashes, **FAST)
    target = tmp_path / "ai4i2020"
    (target / "ai4i2020.csv.gz").write_bytes(gzip.compress(b"UDI\r\n1\r\n"))
    (target / "ai4i2020.csv").write_bytes(b"tampered")  # a plain copy would shadow the .gz for readers
    assert any("ai4i2020.csv" in p for p in D.verify(tmp_path, ["ai4i2020"], hashes=hashes, sources=sources))

    results = D.download(tmp_path, ["ai4i2020"], sources=sources, hashes=hashes, **FAST)
    assert results[0].action == "downloaded"
    assert not (target / "ai4i2020.csv").exists()
    assert gzip.decompress((target / "ai4i2020.csv.gz").read_bytes()) == contents["ai4i2020/ai4i2020.csv"]
    assert server.routes["/uci/601.zip"].hits == 2


def test_hash_mismatch_writes_nothing(tmp_path, fleet):
    sources, hashes, _ = fleet
    bad = dict(hashes, **{"cmapss/test_FD001.txt": "0" * 64})
    with pytest.raises(D.DownloadError, match=r"cmapss/test_FD001.txt: SHA-256 .* expected 0{64}"):
        D.download(tmp_path, ["cmapss"], sources=sources, hashes=bad, **FAST)
    assert _listing(tmp_path) == []  # not even the files that did match


def test_transient_errors_are_retried_with_backoff(tmp_path, server, fleet):
    sources, hashes, _ = fleet
    server.routes["/uci/601.zip"].fail_first = 2
    D.download(tmp_path, ["ai4i2020"], sources=sources, hashes=hashes, **FAST)
    assert server.routes["/uci/601.zip"].hits == 3
    assert D.verify(tmp_path, ["ai4i2020"], hashes=hashes, sources=sources) == []


def test_truncated_download_fails_after_retries_and_leaves_nothing(tmp_path, server, fleet):
    sources, hashes, _ = fleet
    server.routes["/uci/601.zip"].truncate = True
    with pytest.raises(D.DownloadError, match=r"attempt 3/3.*IncompleteRead"):
        D.download(tmp_path, ["ai4i2020"], sources=sources, hashes=hashes, **FAST)
    assert server.routes["/uci/601.zip"].hits == 3
    assert _listing(tmp_path) == []


def test_permanent_http_error_moves_to_the_next_official_url(tmp_path, server, fleet):
    sources, hashes, _ = fleet
    gone = server.add("/uci/gone.zip", status=404)
    bare_csv = server.add("/uci/ai4i2020.csv", body=AI4I)  # UCI's legacy link serves the bare CSV
    sources = dict(sources, ai4i2020=replace(sources["ai4i2020"], urls=(gone, bare_csv)))
    results = D.download(tmp_path, ["ai4i2020"], sources=sources, hashes=hashes, **FAST)
    assert server.routes["/uci/gone.zip"].hits == 1  # a 404 is not retried
    assert results[0].verified
    assert D._read_manifest(tmp_path, "ai4i2020")["files"]["ai4i2020.csv"]["source_url"] == bare_csv


def test_stalled_server_times_out(tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)  # accepts connections, never answers
    try:
        src = replace(D.SOURCES["ai4i2020"], urls=(f"http://127.0.0.1:{sock.getsockname()[1]}/x.zip",))
        with pytest.raises(D.DownloadError, match="timed out"):
            D.download(tmp_path, ["ai4i2020"], sources={"ai4i2020": src}, timeout=0.3, attempts=2, backoff=0.01)
    finally:
        sock.close()
    assert _listing(tmp_path) == []


def test_archive_without_a_wanted_file_is_rejected(tmp_path, server, fleet):
    sources, hashes, _ = fleet
    server.routes["/uci/601.zip"].body = _zip({"other.csv": b"a,b\r\n"})
    with pytest.raises(D.DownloadError, match=r"does not contain ai4i2020\.csv"):
        D.download(tmp_path, ["ai4i2020"], sources=sources, hashes=hashes, **FAST)
    server.routes["/uci/601.zip"].body = b"<!DOCTYPE html><html>Maintenance</html>"
    with pytest.raises(D.DownloadError, match="HTML page"):
        D.download(tmp_path, ["ai4i2020"], sources=sources, hashes=hashes, **FAST)
    assert _listing(tmp_path) == []


def test_unverified_file_changed_later_is_reported_and_refetched(tmp_path, server, fleet):
    sources, hashes, _ = fleet
    D.download(tmp_path, ["cmapss"], sources=sources, hashes=hashes, **FAST)
    (tmp_path / "cmapss" / "RUL_FD003.txt.gz").write_bytes(gzip.compress(b"1 \n"))
    problems = D.verify(tmp_path, ["cmapss"], hashes=hashes, sources=sources)
    assert len(problems) == 1 and "RUL_FD003" in problems[0] and "recorded at download" in problems[0]
    results = D.download(tmp_path, ["cmapss"], sources=sources, hashes=hashes, **FAST)
    assert [r.relative for r in results if r.action == "downloaded"] == ["cmapss/RUL_FD003.txt"]


# ----------------------------------------------------------------------------------------------
# The CLI entry points (main(args) as predmaint/cli.py calls it)
# ----------------------------------------------------------------------------------------------
def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir")
    D.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_main_downloads_and_prints_hashes(tmp_path, fleet, monkeypatch, capsys):
    sources, hashes, contents = fleet
    monkeypatch.setattr(D, "SOURCES", sources)
    monkeypatch.setattr(D, "EXPECTED_SHA256", hashes)
    assert D.main(_args("--data-dir", str(tmp_path), "--retries", "1")) == 0
    out = capsys.readouterr().out
    assert f"verified   downloaded cmapss/train_FD001.txt  sha256 {hashes['cmapss/train_FD001.txt']}" in out
    assert f"UNVERIFIED downloaded cmapss/train_FD004.txt  sha256 {_sha(contents['cmapss/train_FD004.txt'])}" in out
    assert out.strip().splitlines()[-1].endswith("(4 verified, 9 unverified)")
    assert D.main(_args("--data-dir", str(tmp_path), "--verify-only")) == 0


def test_main_usage_errors_exit_2(tmp_path, capsys):
    assert D.main(_args("--data-dir", str(tmp_path), "--url", "nope=http://x")) == 2
    assert D.main(_args("--data-dir", str(tmp_path), "--url", "cmapss=file:///etc/passwd")) == 2
    assert D.main(_args("--data-dir", str(tmp_path), "--retries", "0")) == 2
    assert "NAME=URL" in capsys.readouterr().err


def test_main_url_override_and_network_failure_exit_1(tmp_path, server, capsys):
    url = server.add("/down.zip", status=404)
    assert D.main(_args("--data-dir", str(tmp_path), "--dataset", "ai4i2020", "--url", f"ai4i2020={url}")) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert _listing(tmp_path) == []


def test_main_verify_only_on_missing_data_exits_1(tmp_path, capsys):
    assert D.main(_args("--data-dir", str(tmp_path / "empty"), "--verify-only")) == 1
    captured = capsys.readouterr()
    assert "cmapss/train_FD001.txt: missing" in captured.out
    assert "predmaint data" in captured.err and "PREDMAINT_DATA_DIR" in captured.err


# ----------------------------------------------------------------------------------------------
# verify() and require_data() on the real files
# ----------------------------------------------------------------------------------------------
def test_verify_passes_on_the_real_data(data_dir):
    assert D.verify(data_dir) == []


def test_verify_fails_on_corrupted_copy(tmp_path, data_dir):
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    rul = copy / "cmapss" / "RUL_FD001.txt.gz"
    text = gzip.decompress(rul.read_bytes())
    rul.write_bytes(gzip.compress(text.replace(b"112", b"113", 1)))  # one label changed, valid gzip
    train = copy / "cmapss" / "train_FD001.txt.gz"
    train.write_bytes(train.read_bytes()[:-100])  # truncated gzip stream
    (copy / "ai4i2020" / "ai4i2020.csv.gz").unlink()

    problems = D.verify(copy)
    assert len(problems) == 3, problems
    assert any("RUL_FD001.txt.gz: SHA-256 of content is" in p and D.EXPECTED_SHA256["cmapss/RUL_FD001.txt"] in p
               for p in problems)
    assert any("train_FD001.txt.gz: unreadable or corrupt" in p for p in problems)
    assert any("ai4i2020/ai4i2020.csv: missing" in p for p in problems)
    assert D.verify(copy, ["cmapss"]) == [p for p in problems if "ai4i" not in p]


def test_require_data_resolves_or_explains(tmp_path, monkeypatch, data_dir):
    shared = data_dir
    files = {"train": "cmapss/train_FD001.txt", "test": "cmapss/test_FD001.txt", "data": None}
    found = D.require_data(shared, files)
    assert found["cmapss/train_FD001.txt"] == shared / "cmapss" / "train_FD001.txt.gz"

    with pytest.raises(D.DataMissingError) as exc:
        D.require_data(tmp_path, ["cmapss/train_FD002.txt", "cmapss/test_FD002.txt"])
    msg = str(exc.value)
    assert "cmapss/train_FD002.txt, cmapss/test_FD002.txt" in msg
    assert "predmaint data" in msg and "PREDMAINT_DATA_DIR" in msg
    assert isinstance(exc.value, FileNotFoundError)

    monkeypatch.setenv("PREDMAINT_DATA_DIR", str(shared))
    assert D.default_data_dir() == shared
    assert D.require_data(None, ["ai4i2020/ai4i2020.csv"])
