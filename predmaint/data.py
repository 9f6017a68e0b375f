"""``predmaint data``: fetch the public datasets from their official sources and verify them.

What it does, per dataset (``cmapss``, ``ai4i2020``):

1. Looks at ``<data_dir>/<dataset>/``. A file that is already there (plain or ``.gz``) and whose
   content matches its published SHA-256 is kept; nothing is downloaded if every file is fine.
2. Otherwise streams the official archive into a staging directory inside ``data_dir`` (stall
   timeout, retries with exponential backoff on transient errors, next official URL on a 4xx, a
   progress indication on stderr), extracts the wanted members (also from a nested zip: NASA's
   archive holds ``CMAPSSData.zip`` inside another zip), hashes each member's content and writes
   it gzip-compressed (level 9, no name, mtime 0).
3. Only when EVERY file of the dataset matched its published SHA-256 are the files moved into
   place (``os.replace``: atomic per file). On any failure nothing is moved and the staging
   directory is removed, so an interrupted or failed download never leaves a partial file.

Files without a published hash (C-MAPSS FD002-FD004: the checksum list below does not cover them) are
accepted, their SHA-256 is printed and recorded as UNVERIFIED in ``<dataset>/MANIFEST.json``, and
later runs and :func:`verify` compare them with that recorded value (trust on first use).

Hashes are of the ORIGINAL (decompressed) content, as published with the reference data. The
``.gz`` bytes written here are not byte-identical to GNU ``gzip -9 -n`` output (zlib and gzip use
different deflate implementations and header OS bytes), so the compressed-file hashes in that
README are informational only and never used for verification.

The URL table (:data:`SOURCES`) and the hash table (:data:`EXPECTED_SHA256`) are module-level and
every function takes ``sources=`` / ``hashes=`` overrides, which the tests use to download from a
local HTTP server. The CLI offers ``--url NAME=URL`` for a mirror; hashes cannot be overridden from
the command line, so a mirror still has to serve the official bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

DATA_DIR_ENV = "PREDMAINT_DATA_DIR"
DEFAULT_DATA_DIR = Path("data")
MANIFEST_NAME = "MANIFEST.json"
USER_AGENT = "predmaint-data/0.1 (Python urllib; predictive-maintenance dataset download)"
CHUNK = 1 << 16
# Guards against a wrong URL (an HTML error page, an unrelated huge file) and zip bombs: the real
# archives are ~12 MB (C-MAPSS) and ~0.2 MB (AI4I), the biggest member ~45 MB (train_FD004.txt).
MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
MAX_MEMBER_BYTES = 1024 * 1024 * 1024
MAX_NESTING = 2


@dataclass(frozen=True)
class DatasetSource:
    """Where one dataset comes from and which files it contributes to ``<data_dir>/<name>/``.

    ``urls`` are tried in order (all official); ``files`` are the member base names to extract
    (the archive's directory layout is ignored). A URL may also serve a single file directly
    instead of a zip when ``files`` has exactly one entry.
    """

    name: str
    title: str
    urls: tuple[str, ...]
    files: tuple[str, ...]
    landing_page: str
    license: str
    citation: str


# The official sources. NASA's PCoE Data Set Repository page (landing_page) links item
# "6. Turbofan Engine Degradation Simulation" to the S3 object below; it contains CMAPSSData.zip
# (the original release) nested in an outer zip. The older ti.arc.nasa.gov/c/6/ and data.nasa.gov
# Socrata links are retired. UCI serves dataset 601 as a zip from its "static/public" path; the
# legacy machine-learning-databases path serves the bare CSV and is kept as a fallback.
SOURCES: dict[str, DatasetSource] = {
    "cmapss": DatasetSource(
        name="cmapss",
        title="NASA C-MAPSS Turbofan Engine Degradation Simulation (FD001-FD004)",
        urls=("https://phm-datasets.s3.amazonaws.com/NASA/6.+Turbofan+Engine+Degradation+Simulation+Data+Set.zip",),
        files=tuple(f"{kind}_FD00{i}.txt" for i in range(1, 5) for kind in ("train", "test", "RUL")),
        landing_page="https://www.nasa.gov/intelligent-systems-division/discovery-and-systems-health/pcoe/"
                     "pcoe-data-set-repository/",
        license="Work of the U.S. Government (NASA), public domain in the U.S.",
        citation="A. Saxena, K. Goebel, D. Simon, N. Eklund, Damage Propagation Modeling for Aircraft "
                 "Engine Run-to-Failure Simulation, PHM08, 2008",
    ),
    "ai4i2020": DatasetSource(
        name="ai4i2020",
        title="AI4I 2020 Predictive Maintenance Dataset (UCI id 601)",
        urls=(
            "https://archive.ics.uci.edu/static/public/601/ai4i+2020+predictive+maintenance+dataset.zip",
            "https://archive.ics.uci.edu/ml/machine-learning-databases/00601/ai4i2020.csv",
        ),
        files=("ai4i2020.csv",),
        landing_page="https://archive.ics.uci.edu/dataset/601/ai4i+2020+predictive+maintenance+dataset",
        license="CC BY 4.0 (attribution: Stephan Matzka, UCI Machine Learning Repository)",
        citation="S. Matzka, Explainable Artificial Intelligence for Predictive Maintenance "
                 "Applications, AI4I 2020, pp. 69-74; DOI 10.24432/C5HS5C",
    ),
}

# SHA-256 of the original (decompressed) content, as published with the reference data ("Checksums").
EXPECTED_SHA256: dict[str, str] = {
    "cmapss/train_FD001.txt": "963b5e22825b34d8b21c69e1aeb4af3e647050eb672ee8834ba4b5d91d2de0f8",
    "cmapss/test_FD001.txt": "3cda7109ce17bafb5443f2ac926cfcf88154b941b8c4cf95eb55d1ddd6f52851",
    "cmapss/RUL_FD001.txt": "a19c8ec94931949d0485bdc35118206e9c81c4547b422efb9cf86f4ceddbceca",
    "ai4i2020/ai4i2020.csv": "dc6630cd9b1f0f853922fad78a1b6436570d3f1ec863f1dd5c4340ac56bc8a8e",
}

HOW_TO_GET = (
    "run `predmaint data` to download and verify the datasets (or `predmaint data --dataset NAME`), "
    f"or point --data-dir / the {DATA_DIR_ENV} environment variable at a directory that holds them"
)


class DataMissingError(FileNotFoundError):
    """Required data files are absent; the message lists them and says how to get them."""


class DownloadError(RuntimeError):
    """A download, extraction or verification failed; nothing was moved into the data directory."""


@dataclass
class FileResult:
    """Outcome for one data file: where it is, its content hash and whether that hash is published."""

    relative: str  # e.g. "cmapss/train_FD001.txt" (without .gz)
    path: Path
    sha256: str
    size: int
    verified: bool  # True: matched the published hash; False: no published hash exists
    action: str  # "kept" (already present) or "downloaded"
    gz_sha256: str | None = None


@dataclass
class _Staged:
    relative: str
    tmp_path: Path
    sha256: str
    size: int
    gz_sha256: str
    verified: bool


@dataclass
class _Options:
    timeout: float = 60.0
    attempts: int = 3
    backoff: float = 2.0
    progress: IO[str] | None = None


# ----------------------------------------------------------------------------------------------
# Locating and hashing files
# ----------------------------------------------------------------------------------------------
def default_data_dir() -> Path:
    """``$PREDMAINT_DATA_DIR`` if set (and non-empty), else ``./data``."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env) if env else DEFAULT_DATA_DIR


def find_file(data_dir: str | os.PathLike, relative: str) -> Path | None:
    """The stored copy of ``relative`` (plain first, then ``.gz``, as ``dataio.resolve_file``), or None."""
    p = Path(data_dir) / relative
    for candidate in (p, p.with_name(p.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def content_sha256(path: str | os.PathLike) -> tuple[str, int]:
    """SHA-256 hex digest and size in bytes of a file's ORIGINAL content (gzip is decompressed).

    Gzip is recognised by its magic bytes, not the name. Raises OSError/EOFError for a corrupt or
    truncated gzip stream (the CRC check at the end of the stream catches bit flips).
    """
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw
        with stream:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                h.update(chunk)
                size += len(chunk)
    return h.hexdigest(), size


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes as stored (no decompression)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(data_dir: Path, dataset: str) -> dict:
    path = data_dir / dataset / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _recorded_hash(manifest: dict, name: str) -> str | None:
    entry = (manifest.get("files") or {}).get(name)
    return entry.get("sha256") if isinstance(entry, dict) else None


# ----------------------------------------------------------------------------------------------
# verify / require_data
# ----------------------------------------------------------------------------------------------
def verify(data_dir: str | os.PathLike, datasets: Iterable[str] | None = None, *,
           hashes: Mapping[str, str] | None = None,
           sources: Mapping[str, DatasetSource] | None = None) -> list[str]:
    """Check the data directory against the published hashes; return a list of problems ([] = fine).

    For each dataset (default: all in ``sources``) every file with a published hash must be present
    (plain or ``.gz``) with matching decompressed content. Files without a published hash are only
    checked when present and recorded in the dataset's MANIFEST.json (against the recorded hash).
    """
    data_dir = Path(data_dir)
    hashes = EXPECTED_SHA256 if hashes is None else hashes
    sources = SOURCES if sources is None else sources
    names = list(sources) if datasets is None else list(datasets)
    problems: list[str] = []
    for ds in names:
        if ds not in sources:
            problems.append(f"{ds}: unknown dataset (known: {', '.join(sources)})")
            continue
        manifest = _read_manifest(data_dir, ds)
        for name in sources[ds].files:
            rel = f"{ds}/{name}"
            expected = hashes.get(rel)
            recorded = _recorded_hash(manifest, name)
            path = find_file(data_dir, rel)
            if path is None:
                if expected is not None:
                    problems.append(f"{rel}: missing from {data_dir} (neither {name} nor {name}.gz)")
                continue
            want = expected or recorded
            if want is None:
                continue  # present, no published or recorded hash: nothing to compare with
            try:
                got, _ = content_sha256(path)
            except (OSError, EOFError, zlib.error) as exc:
                problems.append(f"{path}: unreadable or corrupt ({exc})")
                continue
            if got != want:
                kind = "published" if expected else "recorded at download (unverified)"
                problems.append(f"{path}: SHA-256 of content is {got}, expected {want} ({kind})")
    return problems


def require_data(data_dir: str | os.PathLike | None,
                 profile_files: Iterable[str] | Mapping[str, str | None]) -> dict[str, Path]:
    """Resolve the data files a profile needs, or raise :class:`DataMissingError` saying how to get them.

    ``profile_files`` are paths relative to the data directory (e.g. ``cmapss/train_FD001.txt``,
    as ``Profile.file(role)`` returns them), or a mapping role -> path (None values are skipped).
    Returns ``{relative path: stored path}`` (the ``.gz`` copy when that is what exists).
    Only presence is checked here; :func:`verify` checks content.
    """
    base = default_data_dir() if data_dir is None else Path(data_dir)
    rels = [v for v in (profile_files.values() if isinstance(profile_files, Mapping) else profile_files) if v]
    found: dict[str, Path] = {}
    missing: list[str] = []
    for rel in rels:
        p = find_file(base, rel)
        if p is None:
            missing.append(rel)
        else:
            found[rel] = p
    if missing:
        where = "does not exist" if not base.exists() else "does not hold them"
        raise DataMissingError(
            f"data not found: {', '.join(missing)} (plain or .gz) under {base.resolve()}, which {where}; "
            + HOW_TO_GET
        )
    return found


# ----------------------------------------------------------------------------------------------
# Downloading
# ----------------------------------------------------------------------------------------------
class _Permanent(Exception):
    """An HTTP answer that retrying the same URL will not fix (404, 403, ...): try the next URL."""


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


class _Progress:
    """Progress on a stream: a redrawn line on a terminal, a few plain lines (25 % steps) otherwise."""

    def __init__(self, out: IO[str] | None, label: str, total: int | None) -> None:
        self.out, self.label, self.total = out, label, total
        self.tty = bool(out is not None and hasattr(out, "isatty") and out.isatty())
        self.last_draw = 0.0
        self.next_step = 25

    def update(self, done: int) -> None:
        if self.out is None:
            return
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw < 0.2:
                return
            self.last_draw = now
            if self.total:
                pct = 100 * done / self.total
                bar = "#" * int(pct / 5)
                msg = f"\r  {self.label}: [{bar:<20}] {pct:5.1f}% {_human(done)} / {_human(self.total)}"
            else:
                msg = f"\r  {self.label}: {_human(done)}"
            self.out.write(msg)
            self.out.flush()
        elif self.total and 100 * done / self.total >= self.next_step:
            pct = int(100 * done / self.total)
            while self.next_step <= pct:
                self.next_step += 25
            self.out.write(f"  {self.label}: {pct}% ({_human(done)} of {_human(self.total)})\n")
            self.out.flush()

    def finish(self, done: int) -> None:
        if self.out is None:
            return
        if self.tty:
            self.out.write("\r" + " " * 78 + "\r")
        self.out.write(f"  {self.label}: downloaded {_human(done)}\n")
        self.out.flush()


def _fetch_once(url: str, dest: Path, opts: _Options, label: str) -> int:
    """Stream ``url`` into ``dest`` (truncating it). Returns the byte count; raises on any problem."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    try:
        resp = urllib.request.urlopen(req, timeout=opts.timeout)  # the timeout applies to every read
    except urllib.error.HTTPError as exc:
        # 408/429/5xx are the server's transient states; everything else will not change on retry.
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise
        raise _Permanent(f"HTTP {exc.code} {exc.reason}") from exc
    with resp:
        length_header = resp.headers.get("Content-Length")
        total = int(length_header) if length_header and length_header.isdigit() else None
        if total is not None and total > MAX_DOWNLOAD_BYTES:
            raise _Permanent(f"refusing {total} bytes (over the {MAX_DOWNLOAD_BYTES} byte limit)")
        progress = _Progress(opts.progress, label, total)
        done = 0
        with open(dest, "wb") as out:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if done > MAX_DOWNLOAD_BYTES:
                    raise _Permanent(f"response exceeds the {MAX_DOWNLOAD_BYTES} byte limit")
                progress.update(done)
        # http.client raises IncompleteRead on a short body in most cases; check anyway so that
        # a truncated transfer can never pass as a complete one.
        if total is not None and done != total:
            raise http.client.IncompleteRead(b"", total - done)
        progress.finish(done)
        return done


def _progress_stream(progress: IO[str] | bool | None) -> IO[str] | None:
    """True -> the current sys.stderr (looked up per call, so redirection works), False/None -> silent."""
    if progress is True:
        return sys.stderr
    return progress or None


def fetch(urls: Iterable[str], dest: Path, *, timeout: float = 60.0, attempts: int = 3, backoff: float = 2.0,
          progress: IO[str] | bool | None = True, label: str = "download") -> str:
    """Download the first URL that works into ``dest``; return that URL.

    Each URL gets ``attempts`` tries; transient failures (connection errors, timeouts, truncated
    bodies, HTTP 408/429/5xx) wait ``backoff * 2**k`` seconds before the next try; a permanent HTTP
    error moves on to the next URL at once. Raises :class:`DownloadError` listing every failure.
    ``dest`` may hold partial bytes afterwards: callers download into a staging area.
    """
    progress = _progress_stream(progress)
    opts = _Options(timeout=timeout, attempts=max(1, attempts), backoff=backoff, progress=progress)
    errors: list[str] = []
    for url in urls:
        for attempt in range(1, opts.attempts + 1):
            if progress is not None:
                progress.write(f"  {label}: GET {url}" + (f" (attempt {attempt})" if attempt > 1 else "") + "\n")
            try:
                _fetch_once(url, dest, opts, label)
                return url
            except _Permanent as exc:
                errors.append(f"{url}: {exc}")
                break
            except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets are OSErrors
                reason = getattr(exc, "reason", None) or exc
                errors.append(f"{url} (attempt {attempt}/{opts.attempts}): {type(exc).__name__}: {reason}")
                if attempt < opts.attempts:
                    delay = opts.backoff * 2 ** (attempt - 1)
                    if progress is not None:
                        progress.write(f"  {label}: {type(exc).__name__}: {reason}; retrying in {delay:g} s\n")
                    time.sleep(delay)
    raise DownloadError("download failed:\n  " + "\n  ".join(errors))


def _index_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Base name -> member, ignoring directories and macOS resource forks; first occurrence wins."""
    out: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        if info.is_dir() or info.filename.startswith("__MACOSX/") or "/__MACOSX/" in info.filename:
            continue
        base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
        if base and not base.startswith("._"):
            out.setdefault(base, info)
    return out


def _stage_stream(src: IO[bytes], dest_gz: Path, limit: int) -> tuple[str, int, str]:
    """Copy ``src`` into ``dest_gz`` gzip-compressed, hashing the original content on the way.

    Writes like ``gzip -9 -n``: level 9, empty file name, mtime 0, so the same content always gives
    the same bytes. Returns (content sha256, content size, gz file sha256).
    """
    h = hashlib.sha256()
    size = 0
    with open(dest_gz, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                     compresslevel=9) as gz:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            size += len(chunk)
            if size > limit:
                raise DownloadError(f"{dest_gz.name}: member larger than {limit} bytes; refusing")
            h.update(chunk)
            gz.write(chunk)
    return h.hexdigest(), size, file_sha256(dest_gz)


def _extract(archive: Path, wanted: list[str], staging: Path, label: str) -> dict[str, tuple[str, int, str]]:
    """Stage every ``wanted`` base name from ``archive`` (a zip, possibly nested, or one bare file).

    Returns base name -> (content sha256, size, gz sha256); the staged file is ``staging/<name>.gz``.
    Raises DownloadError when a wanted file is not in the archive.
    """
    out: dict[str, tuple[str, int, str]] = {}
    if not zipfile.is_zipfile(archive):
        if len(wanted) != 1:
            raise DownloadError(f"{label}: the download is not a zip archive")
        # A direct file URL (e.g. UCI's legacy CSV link). Reject an HTML error page served with 200.
        with open(archive, "rb") as fh:
            head = fh.read(512).lstrip().lower()
            if head.startswith((b"<!doctype html", b"<html")):
                raise DownloadError(f"{label}: the server returned an HTML page, not the data file")
            fh.seek(0)
            out[wanted[0]] = _stage_stream(fh, staging / f"{wanted[0]}.gz", MAX_MEMBER_BYTES)
        return out

    def walk(zf: zipfile.ZipFile, depth: int) -> None:
        members = _index_members(zf)
        for name in wanted:
            if name not in out and name in members:
                with zf.open(members[name]) as src:
                    out[name] = _stage_stream(src, staging / f"{name}.gz", MAX_MEMBER_BYTES)
        if depth >= MAX_NESTING or all(n in out for n in wanted):
            return
        for base, info in members.items():
            if base.lower().endswith(".zip"):
                if info.file_size > MAX_DOWNLOAD_BYTES:
                    raise DownloadError(f"{label}: nested archive {base} is implausibly large")
                with zf.open(info) as src:
                    inner = io.BytesIO(src.read())
                try:
                    with zipfile.ZipFile(inner) as nested:
                        walk(nested, depth + 1)
                except zipfile.BadZipFile as exc:
                    raise DownloadError(f"{label}: nested archive {base} is corrupt: {exc}") from exc

    try:
        with zipfile.ZipFile(archive) as zf:
            walk(zf, 0)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{label}: corrupt zip archive: {exc}") from exc
    except (OSError, EOFError, zlib.error) as exc:  # a bad CRC or deflate stream inside a member
        raise DownloadError(f"{label}: cannot extract: {exc}") from exc
    absent = [n for n in wanted if n not in out]
    if absent:
        raise DownloadError(f"{label}: the archive does not contain {', '.join(absent)}")
    return out


def _check_existing(data_dir: Path, src: DatasetSource, hashes: Mapping[str, str],
                    manifest: dict) -> tuple[dict[str, FileResult], dict[str, str]]:
    """Split a dataset's files into good ones (kept) and ones to (re)fetch with the reason."""
    good: dict[str, FileResult] = {}
    todo: dict[str, str] = {}
    for name in src.files:
        rel = f"{src.name}/{name}"
        path = find_file(data_dir, rel)
        if path is None:
            todo[name] = "missing"
            continue
        try:
            digest, size = content_sha256(path)
        except (OSError, EOFError, zlib.error) as exc:
            todo[name] = f"corrupt ({exc})"
            continue
        expected = hashes.get(rel)
        want = expected or _recorded_hash(manifest, name)
        if want is not None and digest != want:
            todo[name] = "content does not match its " + ("published" if expected else "recorded") + " SHA-256"
            continue
        good[name] = FileResult(rel, path, digest, size, verified=expected is not None, action="kept")
    return good, todo


def download(data_dir: str | os.PathLike | None = None, datasets: Iterable[str] | None = None, *,
             force: bool = False, sources: Mapping[str, DatasetSource] | None = None,
             hashes: Mapping[str, str] | None = None, timeout: float = 60.0, attempts: int = 3,
             backoff: float = 2.0, progress: IO[str] | bool | None = True) -> list[FileResult]:
    """Make ``<data_dir>/<dataset>/`` hold every file of each dataset, verified; see the module doc.

    Returns one :class:`FileResult` per file (kept or downloaded). Raises :class:`DownloadError`
    (network, archive or hash problems; nothing of that dataset moved into place) or KeyError for
    an unknown dataset name. Datasets are handled one after another: a failure in the second leaves
    the first one complete.
    """
    base = default_data_dir() if data_dir is None else Path(data_dir)
    sources = SOURCES if sources is None else sources
    hashes = EXPECTED_SHA256 if hashes is None else hashes
    progress = _progress_stream(progress)
    names = list(sources) if datasets is None else list(datasets)
    for ds in names:
        if ds not in sources:
            raise KeyError(f"unknown dataset {ds!r}; known: {', '.join(sources)}")
    results: list[FileResult] = []
    for ds in names:
        src = sources[ds]
        target = base / ds
        manifest = _read_manifest(base, ds)
        good, todo = ({}, {n: "--force" for n in src.files}) if force else \
            _check_existing(base, src, hashes, manifest)
        results.extend(good[n] for n in src.files if n in good)
        if not todo:
            continue
        if progress is not None:
            reasons = sorted(set(todo.values()))
            progress.write(f"{ds}: fetching {len(todo)} file(s) ({'; '.join(reasons)}) from {src.title}\n")
        # Staging inside the data directory keeps os.replace on one file system (atomic moves).
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{ds}-download-", dir=base))
        try:
            archive = staging / "archive.download"
            used_url = fetch(src.urls, archive, timeout=timeout, attempts=attempts, backoff=backoff,
                             progress=progress, label=ds)
            extracted = _extract(archive, list(todo), staging, ds)
            archive.unlink()
            staged: list[_Staged] = []
            mismatches: list[str] = []
            for name in todo:
                digest, size, gz_digest = extracted[name]
                rel = f"{ds}/{name}"
                expected = hashes.get(rel)
                if expected is not None and digest != expected:
                    mismatches.append(f"{rel}: SHA-256 {digest}, expected {expected}")
                staged.append(_Staged(rel, staging / f"{name}.gz", digest, size, gz_digest, expected is not None))
            if mismatches:
                raise DownloadError(
                    f"{ds}: verification failed for the archive from {used_url}; nothing was written:\n  "
                    + "\n  ".join(mismatches))
            # Everything verified: record the hashes first, then move into place. Killed in between,
            # the next run finds files missing or not matching the record and fetches them again.
            target.mkdir(parents=True, exist_ok=True)
            _write_manifest(target, staging, src, used_url, manifest, staged)
            for s in staged:
                name = s.relative.split("/", 1)[1]
                final = target / f"{name}.gz"
                os.replace(s.tmp_path, final)
                # dataio.resolve_file prefers a plain file over the .gz: drop a plain copy whose content
                # differs, so that readers see the verified copy.
                _drop_if_different(target / name, s.sha256)
                results.append(FileResult(s.relative, final, s.sha256, s.size, s.verified, "downloaded",
                                          s.gz_sha256))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return results


def _drop_if_different(plain: Path, sha256: str) -> None:
    """Delete ``plain`` if it exists and its content hash is not ``sha256`` (or it is unreadable)."""
    if not plain.is_file():
        return
    try:
        same = content_sha256(plain)[0] == sha256
    except (OSError, EOFError, zlib.error):
        same = False
    if not same:
        plain.unlink()


def _write_manifest(target: Path, staging: Path, src: DatasetSource, url: str, old: dict,
                    staged: list[_Staged]) -> None:
    """Record where the files came from and their hashes (atomically: staged file + os.replace)."""
    files = dict(old.get("files") or {})
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for s in staged:
        files[s.relative.split("/", 1)[1]] = {
            "sha256": s.sha256, "bytes": s.size, "gz_sha256": s.gz_sha256,
            "verified": s.verified, "source_url": url, "retrieved_utc": now,
        }
    doc = {"dataset": src.name, "title": src.title, "landing_page": src.landing_page,
           "license": src.license, "citation": src.citation,
           "note": "sha256 is of the decompressed content; verified=false means no published hash "
                   "exists and the value was recorded at download (trust on first use)",
           "files": dict(sorted(files.items()))}
    tmp = staging / MANIFEST_NAME
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target / MANIFEST_NAME)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``predmaint data`` options (``--data-dir`` is added by the main CLI, not here)."""
    parser.add_argument("--dataset", choices=[*SOURCES, "all"], default="all",
                        help="which dataset to fetch or verify (default: all)")
    parser.add_argument("--force", action="store_true",
                        help="download again even if the files are present and verified")
    parser.add_argument("--verify-only", action="store_true",
                        help="only check the files already in the data directory; exit 1 on any problem")
    parser.add_argument("--url", action="append", default=[], metavar="NAME=URL",
                        help="download NAME from URL instead of the official source (a mirror); "
                             "the published SHA-256 values are still enforced. Repeatable")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds without progress before a connection or read is abandoned (default 60)")
    parser.add_argument("--retries", type=int, default=3,
                        help="attempts per URL for transient network errors (default 3)")


def _parse_url_overrides(items: Iterable[str]) -> dict[str, DatasetSource]:
    sources = dict(SOURCES)
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not url or name not in SOURCES:
            raise ValueError(f"--url expects NAME=URL with NAME one of {', '.join(SOURCES)}; got {item!r}")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--url {name}: only http(s) URLs are supported, got {url!r}")
        sources[name] = replace(sources[name], urls=(url,))
    return sources


def main(args: argparse.Namespace) -> int:
    """Run ``predmaint data``. Returns 0 when all requested data is present and verified,
    1 on download/verification failure, 2 on bad usage."""
    data_dir = Path(args.data_dir) if getattr(args, "data_dir", None) else default_data_dir()
    choice = getattr(args, "dataset", "all") or "all"
    timeout = float(getattr(args, "timeout", 60.0))
    attempts = int(getattr(args, "retries", 3))
    if timeout <= 0 or attempts < 1:
        print("error: --timeout must be > 0 and --retries >= 1", file=sys.stderr)
        return 2
    try:
        sources = _parse_url_overrides(getattr(args, "url", None) or [])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if choice != "all" and choice not in sources:
        print(f"error: unknown dataset {choice!r}; choose from {', '.join(sources)} or all", file=sys.stderr)
        return 2
    datasets = list(sources) if choice == "all" else [choice]

    if getattr(args, "verify_only", False):
        problems = verify(data_dir, datasets, sources=sources)
        for p in problems:
            print(f"problem: {p}")
        if problems:
            print(f"{len(problems)} problem(s) in {data_dir}; " + HOW_TO_GET, file=sys.stderr)
            return 1
        print(f"ok: {', '.join(datasets)} in {data_dir} match the published SHA-256 values")
        return 0

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        results = download(data_dir, datasets, force=bool(getattr(args, "force", False)), sources=sources,
                           timeout=timeout, attempts=attempts)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write to {data_dir}: {exc}", file=sys.stderr)
        return 1
    unverified = [r for r in results if not r.verified]
    for r in results:
        status = "verified  " if r.verified else "UNVERIFIED"
        print(f"{status} {r.action:<10} {r.relative}  sha256 {r.sha256}")
    for ds in datasets:
        if any(r.action == "downloaded" and r.relative.startswith(ds + "/") for r in results):
            src = sources[ds]
            print(f"{ds}: {src.title}; {src.license}; please cite: {src.citation} ({src.landing_page})")
    if unverified:
        print(f"note: {len(unverified)} file(s) have no published SHA-256 (only FD001 and AI4I are listed in "
              "the data README); their hashes above are recorded in MANIFEST.json and checked from now on")
    print(f"data ready in {data_dir} ({len(results) - len(unverified)} verified, {len(unverified)} unverified)")
    return 0
