"""Window maths: trailing-window statistics, truncated EWMs and whole-history (running-sum) statistics.

The batch path (``window_block``, every reading of one asset) and the serving path (``_windows_last``,
the last reading of each of many stacked assets) share the same NumPy expressions on same-shaped rows,
so their features agree bit for bit (a tree split can sit exactly on a value). The running sums
(``sum_keys``, ``_sum_terms``, ``_accumulate``, ``_stats_from_sums``) are also what life summaries carry.
"""

from __future__ import annotations

import numpy as np

from .spec import FeatureSpec


def _ewm_weights(span: int) -> np.ndarray:
    """Weights of a truncated, normalised EWM over the last 3*span readings (newest last)."""
    alpha = 2.0 / (span + 1.0)
    length = 3 * span
    w = (1 - alpha) ** np.arange(length)[::-1]
    return w


#: the running sums (``_sum_terms``) each statistic needs, besides the count
SUMS_FOR = {"mean": ("z",), "std": ("z", "zz"), "slope": ("z", "t", "tt", "tz"), "min": ("min",), "max": ("max",)}


def sum_keys(stats: list[str]) -> list[str]:
    """The running sums that ``stats`` need, in a fixed order."""
    need = {k for st in stats for k in SUMS_FOR[st]}
    return [k for k in ("z", "zz", "t", "tt", "tz", "min", "max") if k in need]


def _sum_terms(z: np.ndarray, t0: np.ndarray, key: str) -> np.ndarray:
    """Per-reading terms (n, s) or (n, 1) of running sum ``key``; ``t0`` (n, 1) is time since the first reading."""
    if key in ("z", "min", "max"):
        return z
    if key == "zz":
        return z * z
    if key == "t":
        return t0
    if key == "tt":
        return t0 * t0
    return t0 * z  # "tz"


def _accumulate(key: str, terms: np.ndarray) -> np.ndarray:
    """Running sums (or minima/maxima) down axis 0: sequential, so continuing from a stored running value
    (a life summary's, stacked as the first row) repeats the batch additions exactly."""
    if key == "min":
        return np.minimum.accumulate(terms, axis=0)
    if key == "max":
        return np.maximum.accumulate(terms, axis=0)
    return np.cumsum(terms, axis=0)


def _stats_from_sums(c: np.ndarray, sums: dict[str, np.ndarray], stats: list[str]) -> list[np.ndarray]:
    """Statistics (rows, s) from counts ``c`` (rows, 1) and running sums: the one formula of whole-history
    (and life-summary) mean, std, least-squares slope, min and max."""
    out = []
    sz = sums.get("z")
    mean = sz / c if sz is not None else None
    for stat in stats:
        if stat == "mean":
            v = mean
        elif stat == "std":
            v = np.sqrt(np.maximum(sums["zz"] / c - mean ** 2, 0.0))
        elif stat in ("min", "max"):
            v = sums[stat]
        else:  # slope
            st, stt, stz = sums["t"], sums["tt"], sums["tz"]
            sxx = stt - st * st / c
            sxy = stz - st * sz / c
            v = np.where(sxx > 1e-12, sxy / np.where(sxx > 1e-12, sxx, 1.0), 0.0)
        out.append(v)
    return out


def _expanding(z: np.ndarray, t: np.ndarray, stats: list[str]) -> list[np.ndarray]:
    """Whole-history statistics at every reading (n, s) per stat, from cumulative sums."""
    c = np.arange(1, len(z) + 1, dtype=float)[:, None]
    t0 = (t - t[0])[:, None]  # shift keeps the sums small (precision)
    sums = {k: _accumulate(k, _sum_terms(z, t0, k)) for k in sum_keys(stats)}
    return _stats_from_sums(c, sums, stats)


def window_block(z: np.ndarray, t: np.ndarray, spec: FeatureSpec, *, last_only: bool = False) -> np.ndarray:
    """Window features of one asset, rows in time order.

    ``z`` is (n, s) normalised sensors, ``t`` (n,) times. Returns (n, f) features for every reading,
    or (1, f) for the last reading only (the serving hot path; same values).
    Feature order per sensor: for each window size, the stats in ``spec.window_stats``; then EWMs.
    """
    n, s = z.shape
    if last_only:
        return _windows_last(z, t, np.array([0, n]), spec)
    sizes, stats, spans = spec.window_sizes, spec.window_stats, spec.ewm_spans
    per_sensor = len(sizes) * len(stats) + len(spans)
    rows = n
    out = np.empty((rows, s, per_sensor))
    col = 0
    for w in sizes:
        if w == 0:  # whole history so far: cumulative sums
            for v in _expanding(z, t, stats):
                out[:, :, col] = v
                col += 1
            continue
        pad = np.full((w - 1, s), np.nan)
        zp = np.vstack([pad, z])
        win = np.lib.stride_tricks.sliding_window_view(zp, w, axis=0).transpose(0, 2, 1)  # (n, w, s)
        tp = np.concatenate([np.full(w - 1, np.nan), t])
        tw = np.lib.stride_tricks.sliding_window_view(tp, w)  # (n, w)
        valid = ~np.isnan(tw)
        for v in _window_stats(win, tw, valid, stats):
            out[:, :, col] = v
            col += 1
    for span in spans:
        wts = _ewm_weights(span)
        length = len(wts)
        zp = np.vstack([np.full((length - 1, s), np.nan), z])
        win = np.lib.stride_tricks.sliding_window_view(zp, length, axis=0).transpose(0, 2, 1)
        out[:, :, col] = _ewm_stat(win, ~np.isnan(win[:, :, 0]), wts)
        col += 1
    return out.reshape(rows, s * per_sensor)


def _window_stats(win: np.ndarray, tw: np.ndarray, valid: np.ndarray | None, stats: list[str]) -> list[np.ndarray]:
    """Stats (rows, s) of windows ``win`` (rows, w, s) at times ``tw`` (rows, w); ``valid`` masks padding.

    Shared by the batch path (sliding windows) and the serving path (gathered trailing windows): the
    same NumPy expressions on same-shaped rows give bit-identical features, which matters because
    a tree split can sit exactly on a value (e.g. a slope of 0 over a constant window).
    ``valid=None`` means no padding (the serving path's full windows): the masks would keep every
    value as it is, so skipping them changes no bit and saves a dozen array passes per window.
    """
    if valid is None:
        cnt = np.full(len(win), win.shape[1])
        vz, tv = win, tw
    else:
        cnt = valid.sum(axis=1)  # (rows,)
        vz = np.where(valid[:, :, None], win, 0.0)
        tv = np.where(valid, tw, 0.0)
    mean = vz.sum(axis=1) / cnt[:, None]
    dev = None
    out = []
    for stat in stats:
        if stat == "mean":
            v = mean
        elif stat in ("std", "slope"):
            if dev is None:
                dev = win - mean[:, None, :]
                if valid is not None:
                    dev = np.where(valid[:, :, None], dev, 0.0)
            if stat == "std":
                v = np.sqrt((dev ** 2).sum(axis=1) / cnt[:, None])
            else:  # slope: least-squares d(z)/d(t) over the window
                tmean = tv.sum(axis=1) / cnt
                dt = tw - tmean[:, None]
                if valid is not None:
                    dt = np.where(valid, dt, 0.0)
                sxx = (dt ** 2).sum(axis=1)
                sxy = (dt[:, :, None] * dev).sum(axis=1)
                v = np.where(sxx[:, None] > 0, sxy / np.where(sxx > 0, sxx, 1.0)[:, None], 0.0)
        elif stat == "min":
            v = (win if valid is None else np.where(valid[:, :, None], win, np.inf)).min(axis=1)
        else:  # max
            v = (win if valid is None else np.where(valid[:, :, None], win, -np.inf)).max(axis=1)
        out.append(v)
    return out


def _ewm_stat(win: np.ndarray, valid: np.ndarray, wts: np.ndarray) -> np.ndarray:
    """Truncated normalised EWM (rows, s) of windows ``win`` (rows, 3*span, s); shared like ``_window_stats``."""
    ww = np.where(valid, wts[None, :], 0.0)
    return (ww[:, :, None] * np.where(valid[:, :, None], win, 0.0)).sum(axis=1) / ww.sum(axis=1)[:, None]


def _gather_windows(z: np.ndarray, t: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The w-reading window ending at each asset's last reading: (m, w, s) values, (m, w) times and mask.

    Padded at the front where an asset has fewer than w readings, like the batch code's sliding
    windows, so ``_window_stats`` sees the same numbers in the same places. Padding entries hold
    some other reading's values (every use of them is masked by ``valid``; the batch holds NaN).
    """
    idx = ends[:, None] - w + np.arange(w)[None, :]  # (m, w) row numbers, oldest first
    valid = idx >= starts[:, None]
    safe = np.maximum(idx, 0)
    return z[safe], t[safe], valid


def _sequential_sum(a: np.ndarray) -> np.ndarray:
    """Sum over axis 1 of a C-contiguous (m, L, k) block, adding in order like ``np.cumsum``.

    With k > 1 NumPy reduces a middle axis row by row (in order, and without writing the prefix
    sums); with k == 1 it would sum pairwise instead, so the cumulative sum's last element is used.
    """
    if a.shape[2] > 1:
        return a.sum(axis=1)
    return np.cumsum(a, axis=1)[:, -1]


def _expanding_last(z: np.ndarray, t: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    stats: list[str], chunk: int = 64) -> list[np.ndarray]:
    """``_expanding``'s value at each asset's last reading, for m stacked assets: (m, s) per stat.

    Bit-identical to the batch code: each asset's history is gathered into a zero-padded block
    (padding in front, where adding 0.0 changes nothing) and summed in order (``_sequential_sum``),
    as the batch's cumulative sums add (a pairwise ``np.sum``/``reduceat`` differs in the last
    bits). Assets go in chunks of similar length so padding stays small.
    """
    lens = ends - starts
    m, s = len(starts), z.shape[1]
    out = [np.empty((m, s)) for _ in stats]
    if m == 1:  # one asset: its rows are the block, nothing to pad or mask (same values, same sums)
        a, b = int(starts[0]), int(ends[0])
        parts = [(np.zeros(1, dtype=np.intp), z[None, a:b], (t[a:b] - t[a])[None, :, None], None)]
    else:
        parts = []
        order = np.argsort(lens, kind="stable")
        for part in np.array_split(order, max(1, -(-m // chunk))):
            L = int(lens[part].max())
            idx = ends[part][:, None] - L + np.arange(L)[None, :]
            valid = idx >= starts[part][:, None]
            safe = np.where(valid, idx, 0)
            zc = np.where(valid[:, :, None], z[safe], 0.0)  # (c, L, s)
            t0 = np.where(valid, t[safe] - t[starts[part]][:, None], 0.0)[:, :, None]  # (c, L, 1)
            parts.append((part, zc, t0, valid))
    for part, zc, t0, valid in parts:
        sums = {}
        for key in sum_keys(stats):
            if key == "min":
                sums[key] = (zc if valid is None else np.where(valid[:, :, None], zc, np.inf)).min(axis=1)
            elif key == "max":
                sums[key] = (zc if valid is None else np.where(valid[:, :, None], zc, -np.inf)).max(axis=1)
            else:
                sums[key] = _sequential_sum(_sum_terms(zc, t0, key))
        for k, v in enumerate(_stats_from_sums(lens[part].astype(float)[:, None], sums, stats)):
            out[k][part] = v
    return out


def _windows_last(z: np.ndarray, t: np.ndarray, offsets: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Window features (m, s * per_sensor) of the last reading of each of m stacked assets.

    Asset i owns rows ``offsets[i]:offsets[i+1]`` of ``z`` (n, s) and ``t`` (n,). Vectorised across
    assets (one gather per window size); bit-identical to ``window_block``'s rows.
    """
    return windows_at(z, t, offsets[:-1], offsets[1:], spec)


def windows_at(z: np.ndarray, t: np.ndarray, starts: np.ndarray, ends: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Window features (m, s * per_sensor) of reading ``ends[i] - 1`` with history from ``starts[i]``.

    The spans ``starts[i]:ends[i]`` of ``z`` (n, s) and ``t`` (n,) may overlap (several readings of one
    asset): only each span's trailing windows are gathered, so m readings cost m windows, not the
    whole history. Bit-identical to ``window_block``'s row of that reading.
    """
    m, s = len(starts), z.shape[1]
    per_sensor = len(spec.window_sizes) * len(spec.window_stats) + len(spec.ewm_spans)
    out = np.empty((m, s, per_sensor))
    col = 0
    one = m == 1  # the one-asset request: full windows are plain slices, no gathers or masks
    n = int(ends[0] - starts[0]) if one else 0
    for w in spec.window_sizes:
        if w == 0:
            vals = _expanding_last(z, t, starts, ends, spec.window_stats)
        elif one and n >= w:
            a = int(ends[0]) - w
            vals = _window_stats(z[None, a:a + w], t[None, a:a + w], None, spec.window_stats)
        else:
            win, tw, valid = _gather_windows(z, t, starts, ends, w)
            vals = _window_stats(win, tw, valid, spec.window_stats)
        for v in vals:
            out[:, :, col] = v
            col += 1
    for span in spec.ewm_spans:
        wts = _ewm_weights(span)
        win, _, valid = _gather_windows(z, t, starts, ends, len(wts))
        out[:, :, col] = _ewm_stat(win, valid, wts)
        col += 1
    return out.reshape(m, s * per_sensor)
