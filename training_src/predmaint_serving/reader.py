"""The compiled request reader: ``request.c`` (JSON reader) + ``features.c`` (feature kernel) via ctypes.

It is an accelerator for ``codec.py``, not a second codec: it takes only bodies the codec accepts
(declining anything unusual, so every refusal and its message come from ``codec.read_python``),
gives bit-identical features and life summaries (read, continued and returned as ``codec.parse_life``,
``features.life`` and ``codec.life_document`` do), and is checked against ``codec.read_python`` every time a model
loads (``agrees_with_python``; a reader that disagrees is not used). ``Plan`` carries what the
reader needs from the model (column names and order, limits, the fitted normalisation and window
layout), built from the same ``model.required`` and ``FeatureSpec`` the Python path reads.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np

from . import F, codec, native


class RequestReader:
    """``request.c`` + ``features.c`` via ctypes: a window-profile request body straight to its
    float32 feature matrix (see there for why and how), or None to let the Python path answer.
    It declines any key of a body or an instance outside its allow-lists, and is not used unless
    those are the codec's ``REQUEST_FIELDS`` and ``INSTANCE_FIELDS`` (``for_model``).

    Same answers as ``codec.read_python`` (bit-identical: checked at load on synthetic requests
    built from the spec by ``agrees_with_python``, and on the FD001 test fleet in tests/perf); it
    declines every request it is not sure about, so errors always come from the Python path.
    """

    STATS: ClassVar[dict[str, int]] = {"mean": 0, "std": 1, "slope": 2, "min": 3, "max": 4}
    #: features.h's LIFE_* codes of the running sums a life summary carries
    SUMS: ClassVar[dict[str, int]] = {"z": 0, "zz": 1, "t": 2, "tt": 3, "tz": 4, "min": 5, "max": 6}

    def __init__(self, fn: Any, spec: F.FeatureSpec, required: list[str], batch: Any = None,
                 life_fn: Any = None):
        import ctypes
        import threading

        i64, dbl = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_double)

        class Plan(ctypes.Structure):  # request.c's Plan, field for field
            _fields_ = [("n_cols", ctypes.c_int64), ("names", ctypes.c_char_p), ("name_end", i64),
                        ("max_instances", ctypes.c_int64), ("max_readings", ctypes.c_int64),
                        ("n_settings", ctypes.c_int64), ("setting_col", i64),
                        ("n_sensors", ctypes.c_int64), ("sensor_col", i64),
                        ("n_regimes", ctypes.c_int64), ("center", dbl), ("scale", dbl), ("centroids", dbl),
                        ("mean", dbl), ("std", dbl),
                        ("n_sizes", ctypes.c_int64), ("sizes", i64), ("n_stats", ctypes.c_int64), ("stats", i64),
                        ("n_spans", ctypes.c_int64), ("span_len", i64), ("ewm_weights", dbl),
                        ("time_feature", ctypes.c_int64), ("n_features", ctypes.c_int64),
                        ("has_hi", ctypes.c_int64), ("hi_w", dbl), ("hi_b", dbl), ("n_life", ctypes.c_int64),
                        ("n_life_stats", ctypes.c_int64), ("life_stats", i64),
                        ("n_life_keys", ctypes.c_int64), ("life_keys", i64), ("life_model", ctypes.c_char_p)]

        encoded = [c.encode() for c in required]
        keep: list[np.ndarray] = []  # the arrays the plan points into live as long as the reader

        def ints(values: Any) -> Any:
            a = np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1))
            keep.append(a)
            return a.ctypes.data_as(i64)

        def doubles(values: Any) -> Any:
            a = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
            keep.append(a)
            return a.ctypes.data_as(dbl)

        weights = [F._ewm_weights(span) for span in spec.ewm_spans]
        self.names = b"".join(encoded)
        keys = F.sum_keys(spec.life_stats) if spec.life_stats else []
        self.life_model = F.life_fingerprint(spec) if spec.life_stats else ""
        self._life_model_bytes = self.life_model.encode("ascii")
        self.plan = Plan(
            len(required), self.names, ints(np.cumsum([len(e) for e in encoded])), codec.MAX_INSTANCES, codec.MAX_READINGS,
            len(spec.setting_columns), ints([required.index(c) for c in spec.setting_columns]),
            len(spec.sensors), ints([required.index(c) for c in spec.sensors]),
            spec.n_regimes, doubles(spec.settings_center), doubles(spec.settings_scale), doubles(spec.centroids),
            doubles(spec._mean), doubles(spec._std),
            len(spec.window_sizes), ints(spec.window_sizes),
            len(spec.window_stats), ints([self.STATS[st] for st in spec.window_stats]),
            len(weights), ints([len(w) for w in weights]), doubles(np.concatenate([np.zeros(0), *weights])),
            int(bool(spec.time_column)), len(spec.feature_names),
            int(bool(spec.hi_weights)), doubles(spec.hi_weights or [0.0]), doubles(spec.hi_bias or [0.0]),
            len(F.life_names(spec)),
            len(spec.life_stats), ints([self.STATS[st] for st in spec.life_stats] or [0]),
            len(keys), ints([self.SUMS[k] for k in keys] or [0]), self._life_model_bytes)
        # a summary's doubles in the life buffer (features.h pm_life_width): first, last, count, then
        # each key's sums; (key, start, end, scalar) says where each key's sums are
        width, at, self._life_slices = len(spec.channels), 3, []
        for k in keys:
            n = 1 if k in F.LIFE_SCALARS else width
            self._life_slices.append((k, at, at + n, k in F.LIFE_SCALARS))
            at += n
        self.life_width = at
        self.life_fn = life_fn if keys else None
        self.full_fn = life_fn  # the entry reading horizons too (life buffers NULL when the model keeps none)
        self.min_readings = int(spec.min_readings or 0)  # fewer readings sent: the answer's warning
        self._keep = keep
        self._plan_address = ctypes.addressof(self.plan)
        self.fn, self.batch, self.n_features = fn, batch, len(spec.feature_names)
        self._local = threading.local()  # output buffers per thread (the container may use threads)

    @classmethod
    def for_model(cls, model: Any) -> RequestReader | None:
        """None unless the model is a window profile request.c covers (no derived or categorical
        inputs, at least two sensors), the library loads, knows exactly the codec's request and
        instance fields, and reproduces the Python path."""
        spec = model.spec
        if (model.getter is None or not spec.window_sizes or not spec.time_column or spec.derived
                or spec.categorical or len(spec.sensors) < 2 or len(spec.setting_columns) > 64
                or os.environ.get("PREDMAINT_NATIVE_REQUEST", "1") == "0"):
            return None
        try:
            functions = native.request_functions()
            if functions is None:
                return None
            fn, batch = functions
            if native.request_fields() != (codec.REQUEST_FIELDS, codec.INSTANCE_FIELDS):
                return None  # a field the codec reads and request.c does not know: it must not be skipped
            reader = cls(fn, spec, model.required, batch, native.request_life_function())
            return reader if reader.agrees_with_python(model) else None
        except Exception:  # any surprise: the Python path always works
            return None

    def read(self, body: bytes) -> tuple[list[Any], np.ndarray, list[dict[str, Any] | None] | None,
                                         tuple[Any, list[Any]] | None, np.ndarray | None] | None:
        """(asset ids, X (n_assets, n_features) float32, each asset's updated life summary in the codec's
        JSON form (``codec.life_document``; None where it sent none, and None when no asset sent one),
        the horizons sent (``(request's horizon, [each asset's own])`` as the JSON gave them, an int as an
        int, None where absent, for ``codec.instance_horizons``; None when the body names none), the
        readings each asset sent (int64, for ``codec.add_warnings``; None when every asset sent at least
        the model's ``min_readings``)) for a request body, or None (declined).

        An asset with fewer readings than the model's window is read as the Python path reads it (its
        features from the readings sent); the caller adds the same warning from the counts."""
        local = self._local
        if not hasattr(local, "X"):
            local.X = np.empty((codec.MAX_INSTANCES, self.n_features), dtype=np.float32)
            local.ids = np.empty((codec.MAX_INSTANCES, 3), dtype=np.int64)
            local.n = np.zeros(1, dtype=np.int64)
            local.hflags = np.zeros(codec.MAX_INSTANCES + 1, dtype=np.int64)
            local.horizons = np.zeros(codec.MAX_INSTANCES + 1, dtype=np.float64)
            local.counts = np.zeros(codec.MAX_INSTANCES, dtype=np.int64)
            if self.life_fn is not None:
                local.flags = np.zeros(codec.MAX_INSTANCES, dtype=np.int64)
                local.life = np.empty((codec.MAX_INSTANCES, self.life_width), dtype=np.float64)
        if self.full_fn is not None:
            life = self.life_fn is not None
            rc = self.full_fn(body, len(body), self._plan_address, local.X.ctypes.data, local.ids.ctypes.data,
                              local.n.ctypes.data, local.flags.ctypes.data if life else None,
                              local.life.ctypes.data if life else None, local.hflags.ctypes.data,
                              local.horizons.ctypes.data, local.counts.ctypes.data)
        else:
            rc = self.fn(body, len(body), self._plan_address, local.X.ctypes.data, local.ids.ctypes.data,
                         local.n.ctypes.data)
        if rc != 0:
            return None
        m = int(local.n[0])
        ids: list[Any] = []
        for i, (kind, a, b) in enumerate(local.ids[:m].tolist()):
            ids.append(i if kind == 0 else body[a:b].decode("ascii") if kind == 1 else int(body[a:b]))
        life = None
        if self.life_fn is not None:
            flags = local.flags[:m]
            if flags.any():
                rows = local.life[:m].tolist()
                life = [self._life_document(row) if f else None for f, row in zip(flags.tolist(), rows, strict=True)]
        asked = None
        if self.full_fn is not None and local.hflags[:m + 1].any():
            # request.c's HORIZON_FLOAT (1) / HORIZON_INT (2): the value as orjson gives it (exact: < 2**53)
            sent = [None if f == 0 else v if f == 1 else int(v)
                    for f, v in zip(local.hflags[:m + 1].tolist(), local.horizons[:m + 1].tolist(), strict=True)]
            asked = (sent[0], sent[1:])
        counts = None
        if self.full_fn is not None and self.min_readings:  # the older entry declines short histories
            sent_n = local.counts[:m]
            if (sent_n < self.min_readings).any():
                counts = sent_n.copy()
        return ids, local.X[:m].copy(), life, asked, counts

    def _life_document(self, row: list[float]) -> dict[str, Any]:
        """``codec.life_document`` of a summary in the life buffer's layout (same keys, order and values)."""
        doc: dict[str, Any] = {"model": self.life_model, "first": row[0], "last": row[1], "count": int(row[2])}
        for k, a, b, scalar in self._life_slices:
            doc[k] = row[a] if scalar else row[a:b]
        return doc

    def features(self, values: np.ndarray, offsets: np.ndarray) -> np.ndarray | None:
        """Features (m, n_features) float32 of the last reading of each of m assets whose validated,
        time-ordered readings are the rows ``offsets[i]:offsets[i+1]`` of ``values`` (columns in
        ``model.required`` order); None if declined. For fleet scoring: equals
        ``features.transform_last(...).astype(float32)``; the GIL is released while it runs."""
        if self.batch is None:
            return None
        values = np.ascontiguousarray(values, dtype=np.float64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if (values.ndim != 2 or values.shape[1] != self.plan.n_cols or offsets.ndim != 1 or len(offsets) < 1
                or offsets[0] < 0 or offsets[-1] > len(values) or (np.diff(offsets) < 0).any()):
            raise ValueError(f"expected (n, {self.plan.n_cols}) values and offsets within them")
        X = np.empty((len(offsets) - 1, self.n_features), dtype=np.float32)
        rc = self.batch(values.ctypes.data, offsets.ctypes.data, len(X), self._plan_address, X.ctypes.data)
        return X if rc == 0 else None

    def agrees_with_python(self, model: Any) -> bool:
        """Self-check: synthetic requests drawn around the spec's own statistics (every regime,
        histories shorter and longer than every window) give bit-identical features both ways,
        and malformed ones are declined."""
        minimum = model.spec.min_readings or 0
        for body in synthetic_requests(model.spec, model.required):
            got = self.read(body)
            document = codec.decode(body)
            req = codec.parse_instances(document, model)
            want = codec.features_matrix(req, model)
            counts = np.diff(req.offsets)
            short = bool((counts < minimum).any())
            if short and self.full_fn is None:  # the older entry declines them: the Python path warns
                if got is not None:
                    return False
            elif got is None or not np.array_equal(got[1], want, equal_nan=True) or \
                    got[0] != [inst.get("asset_id", i) for i, inst in enumerate(document.doc["instances"])] or \
                    (got[4] is not None) != short or (short and not np.array_equal(got[4], counts)):
                return False
            if self.batch is not None:  # the fleet-scoring entry on the same readings
                fleet = self.features(req.columns.matrix, req.offsets)
                if fleet is None or not np.array_equal(fleet, want, equal_nan=True):
                    return False
        if self.life_fn is not None and not self._life_agrees(model):
            return False
        one = synthetic_requests(model.spec, model.required, n_assets=1)[0]
        doc = codec.loads(one)
        unknown = [{**doc, "predmaint_unknown": 1},  # keys outside the allow-lists: declined, never skipped
                   {"instances": [{**doc["instances"][0], "predmaint_unknown": 1}]}]
        return all(self.read(body) is None for body in (one.replace(b"[", b"[[", 1), *map(codec.dumps, unknown)))


    def _life_agrees(self, model: Any) -> bool:
        """Self-check of life summaries: every synthetic asset starts one (``{}``) on its first readings,
        then continues it with readings that overlap them (the repeated ones are not counted twice);
        the features, the returned summaries and the readings counted for the short-history warning
        equal ``codec.read_python``'s, bit for bit. Once with halves of each history, and (the entry that
        reads short histories) once as a stream's first records are: both parts shorter than the window."""
        minimum = model.spec.min_readings or 0
        body = synthetic_requests(model.spec, model.required)[-1]
        instances = [inst for inst in codec.loads(body)["instances"] if len(inst["readings"]) >= 2 * max(minimum, 1)]
        if not instances:
            return True
        for short in (False, True) if self.full_fn is not None and minimum > 2 else (False,):
            split = [_life_split(len(inst["readings"]), minimum, short) for inst in instances]
            start = [{**inst, "readings": inst["readings"][:a], "life": {}}
                     for inst, (a, _) in zip(instances, split, strict=True)]
            for _ in range(2):
                body = codec.dumps({"instances": start})
                got, want = self.read(body), codec.read_python(body, model)
                short = bool((want.readings < minimum).any())
                if got is None or got[2] != want.life or not np.array_equal(got[1], want.X, equal_nan=True) \
                        or (got[4] is not None) != short or (short and not np.array_equal(got[4], want.readings)):
                    return False
                start = [{**inst, "readings": inst["readings"][b:][:len(s["readings"])], "life": doc}
                         for inst, (_, b), s, doc in zip(instances, split, start, want.life, strict=True)]
        return True


def _life_split(n: int, minimum: int, short: bool) -> tuple[int, int]:
    """Where the self-check splits a synthetic history of n readings: (readings that start the summary,
    index of the first reading that continues it). The continuation repeats two readings the start
    already counted. ``short``: both parts shorter than the window ``minimum``, as a stream's first
    records are; else halves of the history."""
    if short:
        return minimum // 2, minimum // 2 - 1
    return n // 2 + 1, n // 2 - 1


def synthetic_requests(spec: F.FeatureSpec, required: list[str], n_assets: int = 0) -> list[bytes]:
    """Request bodies of plausible readings for ``spec`` (settings at its regime centroids, sensors
    around each regime's mean), with history lengths around every window size and one of twice the
    longest plus two (split in halves, each part still fills every window: the life-summary check),
    one asset per body and all in one; ``n_assets=1``: one body with one asset of the longest length."""
    rng = np.random.default_rng(7)
    sizes = [w for w in spec.window_sizes if w] + [3 * s for s in spec.ewm_spans]
    lengths = sorted({1, 2, 3, *(w + d for w in sizes for d in (-1, 0, 1) if w + d > 0),
                      *([2 * max(sizes) + 2] if sizes else [])})
    if n_assets == 1:
        lengths = [lengths[-1]]
    center, scale = np.asarray(spec.settings_center), np.asarray(spec.settings_scale)
    bodies = []
    instances = []
    for a, n in enumerate(lengths):
        t = np.cumsum(rng.choice([1.0, 1.0, 2.0, 0.5], size=n)) + rng.integers(0, 50)
        reg = rng.integers(0, spec.n_regimes, size=n)
        steady = rng.normal(size=len(spec.sensors) + 1)
        readings = []
        for i in range(n):
            r = {}
            for c in required:
                if c == spec.time_column:
                    r[c] = float(t[i])
                elif c in spec.setting_columns:
                    j = spec.setting_columns.index(c)
                    r[c] = float(center[j] + scale[j] * (spec.centroids[reg[i]][j] + rng.normal(0, 0.01)))
                else:
                    k = spec.sensors.index(c) if c in spec.sensors else -1
                    mu, sd = (spec._mean[reg[i], k], spec._std[reg[i], k]) if k >= 0 else (0.0, 1.0)
                    # every other asset holds its sensors constant: windows of equal values
                    # expose a summation order that differs from the batch code's (a mean off by
                    # an ulp gives a std or slope of 1e-17 instead of 0)
                    noise = steady[k] if a % 2 == 0 else rng.normal()
                    r[c] = round(float(mu + sd * noise), 4)
            r["note"] = [None, True, {"x": -0.5e-3}]  # a key the model does not use is skipped
            readings.append(r)
        inst: dict[str, Any] = {"readings": readings}
        if a % 3 == 1:
            inst["asset_id"] = f"engine-{a}"
        elif a % 3 == 2:
            inst["asset_id"] = -a
        instances.append(inst)
    # one asset per request (its windows are slices of one block) and all together (gathered)
    for inst in instances:
        bodies.append(codec.dumps({"instances": [inst]}))
    if len(instances) > 1:
        bodies.append(codec.dumps({"instances": instances, "explain": False}))
    return bodies
