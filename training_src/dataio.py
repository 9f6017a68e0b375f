"""Reading raw fleet files described by a profile, with errors that name the file, row and column.

Plain and gzip-compressed files are both accepted (``x.txt`` or ``x.txt.gz``). Nothing here writes.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from training_src.profiles import Profile


class DataError(ValueError):
    """Raw data does not match its profile; the message says file, row and column."""


def resolve_file(base: str | os.PathLike, relative: str) -> Path:
    """Find ``relative`` under ``base``, plain or with ``.gz`` appended; raise DataError if absent."""
    p = Path(base) / relative
    for candidate in (p, p.with_name(p.name + ".gz"), p.with_suffix("") if p.suffix == ".gz" else None):
        if candidate is not None and candidate.is_file():
            return candidate
    raise DataError(f"data file not found: {p} (nor {p.name}.gz)")


TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".dat")


def parts_folder(relative: str) -> str:
    """The folder that holds a role's file partitioned by asset: ``cmapss/train_FD001.txt`` ->
    ``cmapss/train_FD001`` (the same rule as the prepare Lambda's ``resolve_objects``)."""
    stem = relative[:-3] if relative.endswith(".gz") else relative
    for suffix in TEXT_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def list_parts(base: str | os.PathLike, relative: str) -> list[Path]:
    """Every part of a role's file partitioned by asset under ``base/<folder>/`` (any depth), in key
    order; names starting with ``_`` or ``.`` are markers and skipped. Empty if there is no folder."""
    folder = Path(base) / parts_folder(relative)
    if not folder.is_dir():
        return []
    found = [p for p in folder.rglob("*") if p.is_file()
             and not any(seg.startswith(("_", ".")) for seg in p.relative_to(folder).parts)]
    return sorted(found, key=lambda p: p.relative_to(base).as_posix())


def resolve_parts(base: str | os.PathLike, relative: str) -> list[Path]:
    """A role's raw objects: the file itself (plain or ``.gz``) or, if absent, every part in the folder
    of the same name (``cmapss/train_FD001/part-*.txt``). Raise DataError if there is neither."""
    try:
        return [resolve_file(base, relative)]
    except DataError:
        parts = list_parts(base, relative)
        if parts:
            return parts
        raise DataError(f"data file not found: {Path(base) / relative} (nor its .gz, nor parts under "
                        f"{Path(base) / parts_folder(relative)}/)") from None


def read_text(path: str | os.PathLike) -> str:
    """A raw file's text: gzip (by its magic bytes, whatever its name) or plain, UTF-8 with an optional
    byte-order mark; DataError naming the file otherwise."""
    return _open_text(Path(path)).getvalue()


def _open_text(path: Path) -> io.StringIO:
    return io.StringIO(_utf8_bytes(path)[0].decode("utf-8"))


def _utf8_bytes(path: Path) -> tuple[bytes, bool]:
    """A raw file's bytes, gunzipped, checked to be UTF-8 and without a byte-order mark, and whether its
    text is empty (nothing but white space)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip file: {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")  # checked only: the fast reader parses the bytes themselves
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return (raw[3:] if raw[:3] == b"\xef\xbb\xbf" else raw), not text.strip()


def read_table(path: str | os.PathLike, profile: Profile, *, allow_label: bool = True) -> pd.DataFrame:
    """Read one raw file as the profile describes it and check its columns and numeric types.

    Returns a frame with the profile's column names (after renaming). Raises DataError for an empty
    file, a wrong delimiter, missing columns, extra columns in a header-less file or non-numeric
    values (naming the first offending row, 1-based as in the file, and column).
    """
    path = Path(path)
    raw, empty = _utf8_bytes(path)
    if empty:
        raise DataError(f"{path}: file is empty")
    # the fast reader parses the bytes (pandas would encode a str back to UTF-8 bytes to parse it)
    fast = _read_numeric(io.BytesIO(raw), profile, allow_label)
    if fast is not None:
        return fast
    buf = io.StringIO(raw.decode("utf-8"))
    del raw
    try:
        if profile.file_format == "whitespace":
            df = pd.read_csv(buf, sep=r"\s+", header=0 if profile.header else None, dtype=str,
                             engine="c", keep_default_na=False)
        else:
            df = pd.read_csv(buf, sep=",", header=0 if profile.header else None, dtype=str,
                             keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: cannot parse as {profile.file_format}: {exc}") from exc
    if df.empty:
        raise DataError(f"{path}: no data rows")
    header_rows = 1 if profile.header else 0
    if not profile.header:
        expected = list(profile.columns or ())
        if df.shape[1] != len(expected):
            hint = " (wrong delimiter?)" if df.shape[1] == 1 else ""
            raise DataError(f"{path}: expected {len(expected)} columns {expected[:3]}..., found {df.shape[1]}{hint}")
        df.columns = expected
    # A row with fewer fields than the others is padded by pandas with empty cells: without this check a
    # short row would pass as "missing values" and be gap-filled instead of rejected. A whitespace-separated
    # file cannot express an empty cell, so any empty cell is a short row; in a CSV, count the fields.
    if profile.file_format == "whitespace":
        short = (df == "").any(axis=1).to_numpy()
        counts = (df != "").sum(axis=1).to_numpy()
    else:
        import csv

        lengths = [len(r) for r in csv.reader(buf.getvalue().splitlines()) if r][header_rows:]
        counts = np.asarray(lengths[:len(df)] + [df.shape[1]] * (len(df) - len(lengths)))
        short = counts < df.shape[1]
    if short.any():
        i = int(np.argmax(short))
        raise DataError(f"{path}: row {i + 1 + header_rows}: expected {df.shape[1]} values, found {int(counts[i])}")
    df = df.rename(columns={k: v for k, v in profile.rename.items()})
    required = [c for c in profile.required_columns if allow_label or c != profile.label.column]
    missing = [c for c in required if c not in df.columns]
    if missing:
        hint = " (wrong delimiter?)" if df.shape[1] == 1 else ""
        raise DataError(f"{path}: missing required column(s) {missing}; found {list(df.columns)[:12]}{hint}")
    for col in required:
        if col in profile.categorical_columns:
            levels = profile.categorical_columns[col]
            bad = ~df[col].isin(levels)
            if bad.any():
                i = int(np.argmax(bad.to_numpy()))
                raise DataError(f"{path}: row {i + 1 + header_rows}, column {col!r}: unknown level "
                                f"{df[col].iat[i]!r}; expected one of {list(levels)}")
            continue
        text = df[col]
        num = pd.to_numeric(text, errors="coerce")
        bad = num.isna() & (text.str.strip() != "") & ~text.str.lower().isin(["nan", "na", ""])
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise DataError(f"{path}: row {i + 1 + header_rows}, column {col!r}: not a number: {text.iat[i]!r}")
        df[col] = num.astype("float64")
    return df


def _read_numeric(buf: io.BytesIO, profile: Profile, allow_label: bool) -> pd.DataFrame | None:
    """``read_table``'s result for the common case, read straight as float64 (~6x faster than text
    then ``pd.to_numeric``, with the same parser: pandas' precise ``xstrtod`` serves both, so the
    values are bit for bit those of the text path): a header-less whitespace file with the profile's
    columns, no categorical column, every column required and every cell a finite or infinite
    number. Anything else (None) goes the text path, which names the offending row and column."""
    expected = list(profile.columns or ())
    required = [c for c in profile.required_columns if allow_label or c != profile.label.column]
    renamed = [profile.rename.get(c, c) for c in expected]
    if profile.file_format != "whitespace" or profile.header or profile.categorical_columns or not expected \
            or sorted(renamed) != sorted(required):
        return None
    try:
        df = pd.read_csv(buf, sep=r"\s+", header=None, dtype=np.float64, engine="c")
    except (ValueError, pd.errors.ParserError):
        return None
    if df.empty or df.shape[1] != len(expected) or df.isna().to_numpy().any():
        return None
    df.columns = renamed
    return df


def read_rul_file(path: str | os.PathLike) -> np.ndarray:
    """Read a C-MAPSS style true-RUL file: one non-negative number per line, line i = test asset i."""
    path = Path(path)
    lines = [ln.strip() for ln in _open_text(path).getvalue().splitlines()]
    values = []
    for i, ln in enumerate(lines, 1):
        if not ln:
            continue
        try:
            v = float(ln)
        except ValueError as exc:
            raise DataError(f"{path}: line {i}: not a number: {ln!r}") from exc
        if not np.isfinite(v) or v < 0:
            raise DataError(f"{path}: line {i}: RUL must be a finite number >= 0, got {ln!r}")
        values.append(v)
    if not values:
        raise DataError(f"{path}: file is empty")
    return np.asarray(values)
