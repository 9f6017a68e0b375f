"""Operating regimes and the health index.

Regimes: k-means on standardised settings; the smallest k whose clusters explain ``min_explained_variance``
of the settings' variance (1 for FD001, 6 for FD002/FD004). The health index (``windows.health_index``):
a per-regime linear fit of the capped label on the normalised sensors, one more normalised signal.
"""

from __future__ import annotations

import numpy as np

from .spec import STD_FLOOR, FeatureSpec, _cached


def _standardise_settings(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale < STD_FLOOR, 1.0, scale)
    return center, scale


def detect_regimes(settings: np.ndarray, max_clusters: int, min_explained: float,
                   seed: int = 0) -> np.ndarray:
    """Centroids (standardised space) of the operating regimes found in ``settings`` (n, k).

    Returns the centroids of the smallest k in 1..max_clusters whose clustering explains at least
    ``min_explained`` of the total variance; one centroid (the mean) if none does.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    total = float(((settings - settings.mean(axis=0)) ** 2).sum())
    one = settings.mean(axis=0, keepdims=True)
    if total <= 0 or max_clusters < 2:
        return one
    sample = settings
    if len(settings) > 5_000:  # the structure is coarse; a sample finds it as well
        rng = np.random.default_rng(seed)
        sample = settings[rng.choice(len(settings), 5_000, replace=False)]
        total = float(((sample - sample.mean(axis=0)) ** 2).sum())
    for k in range(2, max_clusters + 1):
        if k > len(np.unique(sample, axis=0)):
            break
        # one OpenMP thread: on a busy machine KMeans's thread team spin-waits (27 s instead of 3 s
        # measured with other jobs running), and 5,000 rows of settings take well under a second on one
        with threadpool_limits(limits=1, user_api="openmp"):
            km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(sample)
        if 1.0 - km.inertia_ / total >= min_explained:
            # deterministic order: sort centroids lexicographically so regime ids are stable
            c = km.cluster_centers_
            order = np.lexsort(c.T[::-1])
            return c[order]
    return one


def assign_regimes(settings_std: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid for each row of standardised settings."""
    if len(centroids) == 1:
        return np.zeros(len(settings_std), dtype=np.int64)
    d = ((settings_std[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1)


def fit_health_index(z: np.ndarray, reg: np.ndarray, y: np.ndarray, n_regimes: int,
                     alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-regime ridge regression of the (capped) RUL label ``y`` (n,) on normalised sensors ``z`` (n, s).

    Returns weights (n_regimes, s) and intercepts (n_regimes,): a linear "health index" in label
    units, one per operating regime because a sensor's degradation signature differs by condition.
    A regime without training rows gets the pooled fit.
    """
    from sklearn.linear_model import Ridge

    pooled = Ridge(alpha=alpha).fit(z, y)
    weights = np.tile(pooled.coef_, (n_regimes, 1))
    bias = np.full(n_regimes, float(pooled.intercept_))
    if n_regimes > 1:
        for r in range(n_regimes):
            rows = reg == r
            if rows.sum() > z.shape[1] + 1:
                m = Ridge(alpha=alpha).fit(z[rows], y[rows])
                weights[r], bias[r] = m.coef_, float(m.intercept_)
    return weights, bias


def _health_index(spec: FeatureSpec, z: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """The health index (n,) of normalised sensors ``z`` (n, s) in regimes ``reg``.

    Summed sensor by sensor in order (not ``@`` or ``.sum``, whose order depends on the BLAS and the
    shape): the compiled kernel repeats exactly these additions, so the bits agree.
    """
    w = _cached(spec, "_hi_w_arr", lambda: np.asarray(spec.hi_weights, dtype=float))
    b = _cached(spec, "_hi_b_arr", lambda: np.asarray(spec.hi_bias, dtype=float))
    wr = w[reg] if spec.n_regimes > 1 else np.broadcast_to(w[0], z.shape)
    h = b[reg] if spec.n_regimes > 1 else np.full(len(z), b[0])
    for j in range(z.shape[1]):
        h = h + wr[:, j] * z[:, j]
    return h

