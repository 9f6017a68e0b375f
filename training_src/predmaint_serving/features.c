/*
 * The feature kernel: training_src.features' ``transform_last`` (the features of each asset's last reading)
 * in C, for the compiled request reader (request.c) and fleet scoring (``predmaint_features``).
 * training_src/predmaint_serving/reader.py loads it with ctypes (no Python headers).
 *
 * Exactness: the features repeat NumPy's arithmetic in NumPy's order: element-wise operations are
 * IEEE (build without -ffast-math and with -ffp-contract=off), sums along the window/history axis
 * of a (rows, w, sensors) block are sequential (how NumPy reduces a middle axis), sums of a
 * contiguous row (window times, EWM weights) are NumPy's pairwise summation. reader.py checks the
 * result against the Python path when it loads the library and does not use it if anything differs.
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "features.h"

/* NumPy's pairwise summation of a contiguous row (numpy/_core/src/umath/loops_utils.h.src). */
static double pairwise(const double *a, int64_t n)
{
    if (n < 8) {
        double res = 0.;
        for (int64_t i = 0; i < n; ++i)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        int64_t i;
        for (int j = 0; j < 8; ++j)
            r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; ++j)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i)
            res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}

/* Normalised signals per reading: the kept sensors, then the health index if the model has one. */
static int64_t channels(const Plan *pl)
{
    return pl->n_sensors + (pl->has_hi ? 1 : 0);
}

typedef struct {
    double *z;     /* rows x channels, normalised */
    double *t;     /* rows */
    double *tmp;   /* scratch of max(window, span) doubles */
    int64_t cap_z, cap_t, cap_tmp;
} Work;

static int grow(double **buf, int64_t *cap, int64_t need)
{
    if (need <= *cap)
        return OK;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    double *b = realloc(*buf, (size_t)c * sizeof *b);
    if (!b)
        return NO_MEMORY;
    *buf = b;
    *cap = c;
    return OK;
}

/* Index of the nearest centroid to a reading's standardised settings (assign_regimes). */
static int64_t regime(const Plan *pl, const double *row)
{
    if (pl->n_regimes <= 1)
        return 0;
    double st[64];
    int64_t k = pl->n_settings, best = 0;
    for (int64_t j = 0; j < k; ++j)
        st[j] = (row[pl->setting_col[j]] - pl->center[j]) / pl->scale[j];
    double best_d = 0.0;
    for (int64_t r = 0; r < pl->n_regimes; ++r) {
        double d2[64];
        for (int64_t j = 0; j < k; ++j) {
            double d = st[j] - pl->centroids[r * k + j];
            d2[j] = d * d;
        }
        double d = pairwise(d2, k); /* .sum(axis=2) over a contiguous last axis */
        if (r == 0 || d < best_d) { /* argmin: the first of equal distances */
            best_d = d;
            best = r;
        }
    }
    return best;
}

/* Window statistics of the last reading over the trailing w readings (w <= n: plain; w > n:
 * padded in front like the batch code, padding masked). Writes out[k * per + col + i]. */
static void window(const Plan *pl, Work *wk, int64_t n, int64_t w, double *out, int64_t per,
                   int64_t col)
{
    int64_t s = channels(pl), pad = w > n ? w - n : 0, first = n - (w - pad); /* first row used */
    int64_t cnt = w - pad;
    double *tv = wk->tmp; /* window times with zeros in the padding, as NumPy sums them */
    for (int64_t i = 0; i < pad; ++i)
        tv[i] = 0.0;
    for (int64_t i = 0; i < cnt; ++i)
        tv[pad + i] = wk->t[first + i];
    double tmean = pairwise(tv, w) / (double)cnt;
    double sxx = 0.0;
    int need_dt = 0;
    for (int64_t q = 0; q < pl->n_stats; ++q)
        need_dt |= pl->stats[q] == STAT_SLOPE;
    if (need_dt) {
        for (int64_t i = 0; i < w; ++i) { /* dt**2 with zeros in the padding */
            double d = i < pad ? 0.0 : wk->t[first + i - pad] - tmean;
            tv[i] = d * d;
        }
        sxx = pairwise(tv, w);
    }
    for (int64_t k = 0; k < s; ++k) {
        const double *zk = wk->z + first * s + k;
        double sum = 0.0;
        for (int64_t i = 0; i < cnt; ++i)
            sum += zk[i * s];
        double mean = sum / (double)cnt;
        for (int64_t q = 0; q < pl->n_stats; ++q) {
            double v;
            switch (pl->stats[q]) {
            case STAT_MEAN:
                v = mean;
                break;
            case STAT_STD: {
                double acc = 0.0;
                for (int64_t i = 0; i < cnt; ++i) {
                    double d = zk[i * s] - mean;
                    acc += d * d;
                }
                v = sqrt(acc / (double)cnt);
                break;
            }
            case STAT_SLOPE: {
                double sxy = 0.0;
                for (int64_t i = 0; i < cnt; ++i)
                    sxy += (wk->t[first + i] - tmean) * (zk[i * s] - mean);
                v = sxx > 0 ? sxy / sxx : 0.0;
                break;
            }
            case STAT_MIN:
                v = zk[0];
                for (int64_t i = 1; i < cnt; ++i)
                    v = zk[i * s] < v ? zk[i * s] : v;
                break;
            default:
                v = zk[0];
                for (int64_t i = 1; i < cnt; ++i)
                    v = zk[i * s] > v ? zk[i * s] : v;
            }
            out[k * per + col + q] = v;
        }
    }
}

/* A whole-history statistic from the count c and the running sums (indexed by LIFE_*): the one formula
 * of features.windows._stats_from_sums, for the expanding window and for life summaries. */
static double from_sums(int64_t stat, double c, const double *sums)
{
    double mean = sums[LIFE_Z] / c;
    switch (stat) {
    case STAT_MEAN:
        return mean;
    case STAT_STD: {
        double var = sums[LIFE_ZZ] / c - mean * mean;
        return sqrt(var > 0.0 ? var : 0.0);
    }
    case STAT_SLOPE: {
        double st = sums[LIFE_T], sxx = sums[LIFE_TT] - st * st / c, sxy = sums[LIFE_TZ] - st * sums[LIFE_Z] / c;
        return sxx > 1e-12 ? sxy / sxx : 0.0;
    }
    case STAT_MIN:
        return sums[LIFE_MIN];
    default:
        return sums[LIFE_MAX];
    }
}

/* Whole-history statistics at the last reading (features._expanding_last): sequential sums. */
static void expanding(const Plan *pl, Work *wk, int64_t n, double *out, int64_t per, int64_t col)
{
    int64_t s = channels(pl);
    double c = (double)n, t0 = wk->t[0], st = 0.0, stt = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        double d = wk->t[i] - t0;
        st += d;
        stt += d * d;
    }
    for (int64_t k = 0; k < s; ++k) {
        const double *zk = wk->z + k;
        double sz = 0.0, szz = 0.0, stz = 0.0, lo = zk[0], hi = zk[0];
        for (int64_t i = 0; i < n; ++i) {
            double z = zk[i * s];
            sz += z;
            szz += z * z;
            stz += (wk->t[i] - t0) * z;
            lo = z < lo ? z : lo;
            hi = z > hi ? z : hi;
        }
        double sums[7] = {sz, szz, st, stt, stz, lo, hi};
        for (int64_t q = 0; q < pl->n_stats; ++q) {
            double v = from_sums(pl->stats[q], c, sums);
            out[k * per + col + q] = v;
        }
    }
}

/* Truncated normalised EWM over the last L readings (features._ewm_stat), padding masked. */
static void ewm(const Plan *pl, Work *wk, int64_t n, int64_t L, const double *wts, double *out,
                int64_t per, int64_t col)
{
    int64_t s = channels(pl), pad = L > n ? L - n : 0, first = n - (L - pad);
    double *ww = wk->tmp;
    for (int64_t i = 0; i < L; ++i)
        ww[i] = i < pad ? 0.0 : wts[i];
    double denom = pairwise(ww, L);
    for (int64_t k = 0; k < s; ++k) {
        double acc = 0.0;
        for (int64_t i = pad; i < L; ++i)
            acc += wts[i] * wk->z[(first + i - pad) * s + k];
        out[k * per + col] = acc / denom;
    }
}

int64_t pm_life_width(const Plan *pl)
{
    int64_t w = 3;
    for (int64_t q = 0; q < pl->n_life_keys; ++q)
        w += (pl->life_keys[q] == LIFE_T || pl->life_keys[q] == LIFE_TT) ? 1 : channels(pl);
    return w;
}

/* A running sum's term of one reading (features.windows._sum_terms): z of channel k, t0 its time since
 * the life's first reading. */
static inline double term(int64_t key, double z, double t0)
{
    switch (key) {
    case LIFE_ZZ:
        return z * z;
    case LIFE_T:
        return t0;
    case LIFE_TT:
        return t0 * t0;
    case LIFE_TZ:
        return t0 * z;
    default: /* z, min, max */
        return z;
    }
}

/* features.life._life_block for one asset of n readings (wk->z, wk->t): the summary in ``st`` (first,
 * last, count, sums; flag LIFE_START: none yet) takes in the readings after its last time, sums
 * continued in order as np.cumsum / np.minimum.accumulate do, and is replaced by the updated one; the
 * life features (features.windows._stats_from_sums) go to x[0:n_life]. DECLINE on overflow. */
static int life_features(const Plan *pl, Work *wk, int64_t n, int64_t flag, double *st, float *x)
{
    int64_t s = channels(pl), lo = 0, count = 0;
    double first = wk->t[0];
    if (flag == LIFE_CONTINUE) {
        first = st[0];
        count = (int64_t)st[2];
        while (lo < n && !(wk->t[lo] > st[1])) /* searchsorted(t, last, side="right"): t is increasing */
            ++lo;
    }
    double *sums = st + 3;
    int64_t off = 0;
    for (int64_t q = 0; q < pl->n_life_keys; ++q) {
        int64_t key = pl->life_keys[q];
        int scalar = key == LIFE_T || key == LIFE_TT;
        int64_t width = scalar ? 1 : s;
        for (int64_t k = 0; k < width; ++k) {
            int64_t i = lo;
            double acc;
            if (count) {
                acc = sums[off + k];
            } else { /* a new life: the first term is the running value (cumsum's first element) */
                acc = term(key, wk->z[i * s + k], wk->t[i] - first);
                ++i;
            }
            for (; i < n; ++i) {
                double v = term(key, scalar ? 0.0 : wk->z[i * s + k], wk->t[i] - first);
                if (key == LIFE_MIN)
                    acc = v < acc ? v : acc;
                else if (key == LIFE_MAX)
                    acc = v > acc ? v : acc;
                else
                    acc += v;
            }
            if (!isfinite(acc))
                return DECLINE; /* only a forged summary gets here: the codec's 400 */
            sums[off + k] = acc;
        }
        off += width;
    }
    if (count + (n - lo) > ((int64_t)1 << 53))
        return DECLINE; /* a count a double does not hold exactly (only a forged summary) */
    st[0] = first;
    if (n > lo)
        st[1] = wk->t[n - 1];
    st[2] = (double)(count + (n - lo));
    double c = st[2], sk[7] = {0};
    for (int64_t k = 0; k < s; ++k) {
        off = 0;
        for (int64_t q = 0; q < pl->n_life_keys; ++q) { /* this channel's sums by key */
            int64_t key = pl->life_keys[q];
            int scalar = key == LIFE_T || key == LIFE_TT;
            sk[key] = sums[off + (scalar ? 0 : k)];
            off += scalar ? 1 : s;
        }
        for (int64_t q = 0; q < pl->n_life_stats; ++q) {
            double v = from_sums(pl->life_stats[q], c, sk);
            if (!(fabs(v) <= FLT_MAX)) /* features.life.life_overflows: the codec's 400 */
                return DECLINE;
            x[k * pl->n_life_stats + q] = (float)v;
        }
    }
    return OK;
}

static int features(const Plan *pl, const double *vals, int64_t n, Work *wk, double *win, float *x,
                    int64_t life_flag, double *life)
{
    int64_t ns = pl->n_sensors, s = channels(pl), cols = pl->n_cols;
    TRY(grow(&wk->z, &wk->cap_z, n * s));
    TRY(grow(&wk->t, &wk->cap_t, n));
    double *z = wk->z;
    for (int64_t i = 0; i < n; ++i)
        wk->t[i] = vals[i * cols];
    for (int64_t i = 0; i < n; ++i) {
        const double *row = vals + i * cols;
        int64_t r = regime(pl, row);
        const double *mu = pl->mean + r * ns, *sd = pl->std + r * ns;
        for (int64_t k = 0; k < ns; ++k)
            z[i * s + k] = (row[pl->sensor_col[k]] - mu[k]) / sd[k];
        if (pl->has_hi) { /* features._health_index: bias, then each sensor's term in order */
            const double *hw = pl->hi_w + r * ns;
            double h = pl->hi_b[r];
            for (int64_t k = 0; k < ns; ++k)
                h = h + hw[k] * z[i * s + k];
            z[i * s + ns] = h;
        }
    }
    int64_t per = pl->n_sizes * pl->n_stats + pl->n_spans, col = 0;
    for (int64_t q = 0; q < pl->n_sizes; ++q, col += pl->n_stats) {
        if (pl->sizes[q] == 0)
            expanding(pl, wk, n, win, per, col);
        else
            window(pl, wk, n, pl->sizes[q], win, per, col);
    }
    const double *wts = pl->ewm_weights;
    for (int64_t q = 0; q < pl->n_spans; ++q, ++col) {
        ewm(pl, wk, n, pl->span_len[q], wts, win, per, col);
        wts += pl->span_len[q];
    }
    /* assemble: [time], z at the last reading, window block, [regime one-hot] */
    int64_t f = 0;
    const double *last = vals + (n - 1) * cols;
    if (pl->time_feature)
        x[f++] = (float)last[0];
    for (int64_t k = 0; k < s; ++k)
        x[f++] = (float)z[(n - 1) * s + k];
    for (int64_t j = 0; j < s * per; ++j)
        x[f++] = (float)win[j];
    if (pl->n_regimes > 1) {
        int64_t r = regime(pl, last);
        for (int64_t j = 0; j < pl->n_regimes; ++j)
            x[f++] = j == r ? 1.0f : 0.0f;
    }
    for (int64_t j = 0; j < f; ++j) /* absurd inputs (1e300) overflow: let NumPy's rules answer */
        if (!isfinite(x[j]))
            return DECLINE;
    if (life_flag != LIFE_NONE)
        return life_features(pl, wk, n, life_flag, life, x + f);
    for (int64_t j = 0; j < pl->n_life; ++j) /* no life summary: those features are missing */
        x[f++] = NAN;
    return OK;
}

int pm_plan_ok(const Plan *pl)
{
    int64_t per = pl->n_sizes * pl->n_stats + pl->n_spans;
    int64_t width = pl->time_feature + channels(pl) * (1 + per) + (pl->n_regimes > 1 ? pl->n_regimes : 0) + pl->n_life;
    if (pl->n_life && pl->n_life != channels(pl) * pl->n_life_stats)
        return 0;
    for (int64_t q = 0; q < pl->n_life_keys; ++q)
        if (pl->life_keys[q] < LIFE_Z || pl->life_keys[q] > LIFE_MAX)
            return 0;
    return pl->n_settings <= 64 && pl->n_cols >= 1 && width == pl->n_features;
}

int64_t pm_min_readings(const Plan *pl)
{
    int64_t need = 1;
    for (int64_t q = 0; q < pl->n_sizes; ++q) {
        if (pl->sizes[q] == 0)
            return 0;
        need = pl->sizes[q] > need ? pl->sizes[q] : need;
    }
    for (int64_t q = 0; q < pl->n_spans; ++q)
        need = pl->span_len[q] > need ? pl->span_len[q] : need;
    return need;
}

int pm_assets(const Plan *pl, const double *vals, const int64_t *starts, int64_t n_assets, float *X)
{
    return pm_assets_life(pl, vals, starts, n_assets, X, NULL, NULL);
}

int pm_assets_life(const Plan *pl, const double *vals, const int64_t *starts, int64_t n_assets, float *X,
                   const int64_t *life_flag, double *life)
{
    int64_t lw = pm_life_width(pl);
    Work wk = {0};
    double *win = NULL;
    int64_t cap_win = 0, max_w = 1;
    for (int64_t q = 0; q < pl->n_sizes; ++q)
        max_w = pl->sizes[q] > max_w ? pl->sizes[q] : max_w;
    for (int64_t q = 0; q < pl->n_spans; ++q)
        max_w = pl->span_len[q] > max_w ? pl->span_len[q] : max_w;
    int rc = grow(&wk.tmp, &wk.cap_tmp, max_w);
    if (rc == OK)
        rc = grow(&win, &cap_win, channels(pl) * (pl->n_sizes * pl->n_stats + pl->n_spans) + 1);
    for (int64_t a = 0; rc == OK && a < n_assets; ++a) {
        int64_t r0 = starts[a], n = starts[a + 1] - r0;
        int64_t flag = life_flag ? life_flag[a] : LIFE_NONE;
        rc = n >= 1 ? features(pl, vals + r0 * pl->n_cols, n, &wk, win, X + a * pl->n_features, flag,
                               life ? life + a * lw : NULL)
                    : DECLINE;
    }
    free(wk.z);
    free(wk.t);
    free(wk.tmp);
    free(win);
    return rc;
}


/* Fleet scoring: the features of already validated readings (vals: rows x n_cols in the plan's
 * column order, each asset's rows time-ordered; asset a owns rows starts[a]:starts[a+1]). */
int predmaint_features(const double *vals, const int64_t *starts, int64_t n_assets, const Plan *pl, float *X)
{
    return pm_plan_ok(pl) ? pm_assets(pl, vals, starts, n_assets, X) : DECLINE;
}
