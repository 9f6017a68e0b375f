/*
 * Compiled request reader for the serving hot path of window profiles: one call turns a JSON
 * request body into the feature matrix (one float32 row per asset, its last reading), which
 * forest.c then scores. This file is the JSON reader; the features come from the feature kernel
 * (features.c). training_src/predmaint_serving/reader.py loads both, built into one library, with ctypes.
 *
 * Why: in Python a one-asset request spends ~0.5 ms decoding JSON into objects, pulling the numbers
 * back out and running ~100 small NumPy calls for the window features; here the same work is a
 * single pass over the body plus a few thousand floating-point operations.
 *
 * Contract: it either produces exactly what the Python path (codec.py: orjson -> _fast_assets ->
 * features.transform_last -> float32) produces, or it declines (returns non-zero) and the Python
 * path handles the request, error messages included. So it declines on anything unusual: escapes
 * or non-ASCII bytes in a string, a duplicate key, a missing column, a non-numeric value, a number
 * out of range, readings out of time order, "explain" other than false, a "horizon" (request or
 * instance) that is not plainly a number of cycles >= 0 (horizon: intervals.is_valid_horizon's numbers
 * only, an integer below 2**53 so that it is exact), a "life" summary it does not fully validate (life_summary: another model's, a repeated
 * key, or anything codec.parse_life refuses), nesting deeper than 64, and any key of the body or
 * of an instance that is not in its allow-lists (REQUEST_FIELDS, INSTANCE_FIELDS below, which must be
 * the codec's: a field added to the codec alone makes the reader decline it, never skip it).
 * It accepts only RFC 8259 JSON, like orjson.
 *
 * Exactness: numbers are parsed correctly rounded (exact fast path, else strtod in the C locale), as
 * orjson and Python do; the features are features.c's (see there). reader.py checks the result
 * against the Python path when it loads the library and does not use it if anything differs.
 */
#define _GNU_SOURCE
#include <locale.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "features.h"

enum { ID_INDEX = 0, ID_STRING = 1, ID_INT = 2 };

/* what a horizon slot holds: none sent, a JSON float (a Python float), a JSON integer (a Python int) */
enum { HORIZON_NONE = 0, HORIZON_FLOAT = 1, HORIZON_INT = 2 };

#define MAX_DEPTH 64

typedef struct {
    const unsigned char *p, *end;
    const Plan *plan;
    double *vals; /* readings x n_cols, row-major */
    int64_t n_rows, cap_rows;
    int64_t *starts; /* asset a owns rows starts[a]:starts[a+1] */
    int64_t n_assets;
    int64_t *ids; /* per asset: kind, start, end (byte offsets into the body) */
    int64_t *life_flag; /* per asset: LIFE_* (NULL: decline every life summary) */
    double *life;       /* per asset: pm_life_width doubles, the summary read */
    int64_t *horizon_flag; /* [0]: the request's horizon, [a + 1]: asset a's (HORIZON_*; NULL: decline any) */
    double *horizon;       /* the horizons read, same layout */
    uint32_t *seen;
    uint32_t stamp;
    /* the previous reading's keys, by position: most requests repeat one key order */
    int64_t *prev_col, *prev_len;
    const unsigned char **prev_key;
    int64_t n_prev, cap_prev;
    const unsigned char *begin;
} Parser;

static locale_t c_locale;

static inline void ws(Parser *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        ++s->p;
}

static inline int peek(Parser *s) { return s->p < s->end ? *s->p : -1; }

static inline int expect(Parser *s, int ch)
{
    ws(s);
    if (peek(s) != ch)
        return DECLINE;
    ++s->p;
    return OK;
}

/* A string without escapes of printable ASCII; *a points at its first byte. */
static int string(Parser *s, const unsigned char **a, int64_t *len)
{
    if (peek(s) != '"')
        return DECLINE;
    const unsigned char *q = ++s->p;
    while (q < s->end && *q != '"') {
        if (*q < 0x20 || *q == '\\' || *q >= 0x80)
            return DECLINE;
        ++q;
    }
    if (q >= s->end)
        return DECLINE;
    *a = s->p;
    *len = q - s->p;
    s->p = q + 1;
    return OK;
}

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* m / 10^k (m < 2^63, 0 < k <= 22) correctly rounded, for the 17-18 digit numbers a double's shortest
 * text often has (m beyond 2^53, where one IEEE division is not enough): the division's result v, kept
 * only when exact integer arithmetic proves it is the nearest double (|m/10^k - v| < half an ulp of v,
 * strictly: a tie or a miss is left to strtod). Returns 1 with *out set, or 0. */
static int near_exact(uint64_t m, int64_t k, double *out)
{
    static const uint64_t P10[20] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
                                     100000000ull, 1000000000ull, 10000000000ull, 100000000000ull,
                                     1000000000000ull, 10000000000000ull, 100000000000000ull,
                                     1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
                                     1000000000000000000ull, 10000000000000000000ull};
    if (k > 19)
        return 0;
    double v = (double)m / POW10[k];
    int ex;
    double f = frexp(v, &ex); /* v = f * 2^ex, 0.5 <= f < 1: v = M * 2^E with M = f * 2^53, E = ex - 53 */
    uint64_t M = (uint64_t)ldexp(f, 53);
    int64_t E = ex - 53;
    if (M == (1ull << 52) || E >= 0 || -E > 62)
        return 0; /* a power of two (uneven neighbours), or beyond what 128 bits hold below */
    /* |m/10^k - M 2^E| < 2^(E-1)  <=>  |2m 2^-E - 2M 10^k| < 10^k, all in unsigned 128-bit integers */
    unsigned __int128 lhs = ((unsigned __int128)m << (1 - E)), mid = (unsigned __int128)(2 * M) * P10[k];
    unsigned __int128 diff = lhs > mid ? lhs - mid : mid - lhs;
    if (!(diff < (unsigned __int128)P10[k]))
        return 0;
    *out = v;
    return 1;
}

/* A JSON number, correctly rounded to double; *integer when it has no fraction or exponent (an
 * integer in Python: "-0" is 0, not -0.0). Declines on numbers beyond the double range. */
static int number(Parser *s, double *out, int *integer)
{
    const unsigned char *q = s->p, *end = s->end, *start = s->p;
    int neg = 0, exact = 1, frac_digits = 0, is_int = 1;
    uint64_t m = 0;
    int64_t exp10 = 0;
    if (q < end && *q == '-') {
        neg = 1;
        ++q;
    }
    if (q >= end)
        return DECLINE;
    if (*q == '0') {
        ++q;
    } else if (*q >= '1' && *q <= '9') {
        while (q < end && *q >= '0' && *q <= '9') {
            if (m < 100000000000000000ull)
                m = m * 10 + (uint64_t)(*q - '0');
            else
                exact = 0;
            ++q;
        }
    } else {
        return DECLINE;
    }
    if (q < end && *q == '.') {
        is_int = 0;
        ++q;
        if (q >= end || *q < '0' || *q > '9')
            return DECLINE;
        while (q < end && *q >= '0' && *q <= '9') {
            if (m < 100000000000000000ull) {
                m = m * 10 + (uint64_t)(*q - '0');
                ++frac_digits;
            } else {
                exact = 0;
            }
            ++q;
        }
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        is_int = 0;
        ++q;
        int eneg = 0;
        if (q < end && (*q == '+' || *q == '-')) {
            eneg = *q == '-';
            ++q;
        }
        if (q >= end || *q < '0' || *q > '9')
            return DECLINE;
        while (q < end && *q >= '0' && *q <= '9') {
            if (exp10 < 100000)
                exp10 = exp10 * 10 + (*q - '0');
            ++q;
        }
        if (eneg)
            exp10 = -exp10;
    }
    s->p = q;
    *integer = is_int;
    int64_t e = exp10 - frac_digits;
    double v;
    if (m == 0 && exact) {
        v = (neg && !is_int) ? -0.0 : 0.0;
    } else if (exact && m <= (1ull << 53) && e >= -22 && e <= 22) {
        /* both operands exact, one IEEE rounding: the correctly rounded value */
        v = e >= 0 ? (double)m * POW10[e] : (double)m / POW10[-e];
        if (neg)
            v = -v;
    } else if (exact && e >= -22 && e < 0 && m <= (1ull << 63) && near_exact(m, -e, &v)) {
        if (neg)
            v = -v;
    } else {
        char buf[80];
        size_t n = (size_t)(q - start);
        if (n >= sizeof buf)
            return DECLINE;
        memcpy(buf, start, n);
        buf[n] = 0;
        char *stop;
        if (!c_locale)
            return DECLINE;
        v = strtod_l(buf, &stop, c_locale);
        if (stop != buf + n || !isfinite(v) || (v == 0.0 && m != 0))
            return DECLINE; /* out of range: orjson refuses it, the Python path says which field */
    }
    *out = v;
    return OK;
}

static int literal(Parser *s, const char *word)
{
    size_t n = strlen(word);
    if (s->end - s->p < (ptrdiff_t)n || memcmp(s->p, word, n) != 0)
        return DECLINE;
    s->p += n;
    return OK;
}

/* A "horizon" value into slot ``at`` of the horizon buffers, taken only when intervals.is_valid_horizon
 * plainly accepts it: a JSON number (not a string, boolean, null, array or object), >= 0 (-0.0 is, as
 * in Python), finite (number() declines the rest), an integer below 2**53 (exact as a double, so the
 * reader hands back Python's int). A repeated horizon key (in its object) and anything else: DECLINE,
 * so the message comes from the Python path (codec.decode, codec.check_instance_horizons). */
static int horizon_value(Parser *s, int64_t at)
{
    if (!s->horizon_flag || s->horizon_flag[at] != HORIZON_NONE)
        return DECLINE;
    ws(s);
    int c = peek(s), integer;
    if (!(c == '-' || (c >= '0' && c <= '9')))
        return DECLINE;
    double v;
    TRY(number(s, &v, &integer));
    if (!(v >= 0.0) || (integer && !(v < 9007199254740992.0)))
        return DECLINE;
    s->horizon[at] = v;
    s->horizon_flag[at] = integer ? HORIZON_INT : HORIZON_FLOAT;
    return OK;
}

/* Walking objects and arrays. Every object and array this reader uses must be non-empty. */
static int open_nonempty(Parser *s, int open, int close)
{
    TRY(expect(s, open));
    ws(s);
    return peek(s) == close ? DECLINE : OK;
}

/* An object member's key and the ':' after it. */
static int key(Parser *s, const unsigned char **k, int64_t *len)
{
    ws(s);
    TRY(string(s, k, len));
    TRY(expect(s, ':'));
    ws(s);
    return OK;
}

/* After a member or element: 1 if another follows (','), 0 at ``close``, -1 on anything else. */
static int more(Parser *s, int close)
{
    ws(s);
    int d = peek(s);
    if (d != ',' && d != close)
        return -1;
    ++s->p;
    return d == ',';
}

/* Any JSON value (of a key the model does not use), checked but not kept. */
static int skip(Parser *s, int depth)
{
    if (depth > MAX_DEPTH)
        return DECLINE;
    ws(s);
    int c = peek(s);
    const unsigned char *a;
    int64_t len;
    if (c == '"')
        return string(s, &a, &len);
    if (c == '-' || (c >= '0' && c <= '9')) {
        double v;
        int integer;
        return number(s, &v, &integer);
    }
    if (c == 't')
        return literal(s, "true");
    if (c == 'f')
        return literal(s, "false");
    if (c == 'n')
        return literal(s, "null");
    if (c != '{' && c != '[')
        return DECLINE;
    int close = c == '{' ? '}' : ']';
    ++s->p;
    ws(s);
    if (peek(s) == close) {
        ++s->p;
        return OK;
    }
    int m;
    do {
        if (c == '{')
            TRY(key(s, &a, &len));
        TRY(skip(s, depth + 1));
    } while ((m = more(s, close)) == 1);
    return m == 0 ? OK : DECLINE;
}

static inline int key_is(const unsigned char *a, int64_t len, const char *word)
{
    return (size_t)len == strlen(word) && memcmp(a, word, (size_t)len) == 0;
}

static int64_t lookup(const Plan *pl, const unsigned char *a, int64_t len)
{
    int64_t from = 0;
    for (int64_t j = 0; j < pl->n_cols; ++j) {
        int64_t to = pl->name_end[j];
        if (to - from == len && memcmp(pl->names + from, a, (size_t)len) == 0)
            return j;
        from = to;
    }
    return -1;
}

/* Whether the k-th key of this reading is, byte for byte, the k-th key of the previous one (then
 * consumed up to its closing quote). That key already passed string(), so no byte needs checking
 * again: the same text is the same valid key. */
static inline int same_key(Parser *s, int64_t k)
{
    if (k >= s->n_prev)
        return 0;
    int64_t len = s->prev_len[k];
    const unsigned char *p = s->p;
    if (s->end - p < len + 2 || p[0] != '"' || p[len + 1] != '"' || memcmp(p + 1, s->prev_key[k], (size_t)len) != 0)
        return 0;
    s->p = p + len + 2;
    return 1;
}

/* Note that the k-th key of this reading is the text a[0:len], column j (-1: not used). */
static int remember(Parser *s, int64_t k, const unsigned char *a, int64_t len, int64_t j)
{
    if (k >= s->cap_prev) {
        int64_t cap = s->cap_prev ? 2 * s->cap_prev : 32;
        int64_t *c = realloc(s->prev_col, (size_t)cap * sizeof *c);
        if (!c)
            return NO_MEMORY;
        s->prev_col = c;
        const unsigned char **kk = realloc(s->prev_key, (size_t)cap * sizeof *kk);
        if (!kk)
            return NO_MEMORY;
        s->prev_key = kk;
        int64_t *l = realloc(s->prev_len, (size_t)cap * sizeof *l);
        if (!l)
            return NO_MEMORY;
        s->prev_len = l;
        s->cap_prev = cap;
    }
    s->prev_col[k] = j;
    s->prev_key[k] = a;
    s->prev_len[k] = len;
    return OK;
}

static int reading(Parser *s, int64_t row)
{
    const Plan *pl = s->plan;
    double *out = s->vals + row * pl->n_cols;
    int64_t found = 0, k = 0;
    if (++s->stamp == 0) { /* stamps wrapped: forget every old mark */
        memset(s->seen, 0, (size_t)pl->n_cols * sizeof *s->seen);
        s->stamp = 1;
    }
    TRY(open_nonempty(s, '{', '}'));
    int m;
    for (;; ++k) {
        int64_t j;
        ws(s);
        if (same_key(s, k)) { /* the common case: every reading lists its keys in one order */
            j = s->prev_col[k];
        } else {
            const unsigned char *a;
            int64_t len;
            TRY(string(s, &a, &len));
            j = lookup(pl, a, len);
            TRY(remember(s, k, a, len, j));
        }
        TRY(expect(s, ':'));
        ws(s);
        if (j >= 0) {
            int integer;
            int c = peek(s);
            if (s->seen[j] == s->stamp || !(c == '-' || (c >= '0' && c <= '9')))
                return DECLINE; /* a duplicate key, or not a number (null, true, a string...) */
            s->seen[j] = s->stamp;
            TRY(number(s, out + j, &integer));
            ++found;
        } else {
            TRY(skip(s, 2));
        }
        if ((m = more(s, '}')) != 1)
            break;
    }
    s->n_prev = k + 1;
    return m == 0 && found == pl->n_cols ? OK : DECLINE;
}

static int readings(Parser *s)
{
    const Plan *pl = s->plan;
    int64_t first = s->n_rows;
    TRY(open_nonempty(s, '[', ']'));
    int m;
    do {
        if (s->n_rows - first >= pl->max_readings)
            return DECLINE;
        if (s->n_rows == s->cap_rows) {
            int64_t cap = s->cap_rows ? 2 * s->cap_rows : 256;
            double *v = realloc(s->vals, (size_t)(cap * pl->n_cols) * sizeof *v);
            if (!v)
                return NO_MEMORY;
            s->vals = v;
            s->cap_rows = cap;
        }
        TRY(reading(s, s->n_rows));
        ++s->n_rows;
    } while ((m = more(s, ']')) == 1);
    if (m < 0)
        return DECLINE;
    /* times strictly increasing (the Python path sorts other orders and names duplicates) */
    for (int64_t r = first + 1; r < s->n_rows; ++r)
        if (!(s->vals[r * pl->n_cols] > s->vals[(r - 1) * pl->n_cols]))
            return DECLINE;
    return OK;
}

/* The keys of a body and of an instance this reader knows (reads, or declines to let the Python path read
 * them), comma-separated in the codec's order: they must equal codec.REQUEST_FIELDS and
 * codec.INSTANCE_FIELDS, which reader.py checks before it uses the library (an added codec field without
 * its handling here disables the reader instead of being skipped). Any other key: DECLINE. A reading's
 * keys are the model's columns; the ones it does not use are skipped, as the codec ignores them. */
static const char REQUEST_FIELDS[] = "instances,explain,horizon";
static const char INSTANCE_FIELDS[] = "asset_id,readings,horizon,life";

const char *predmaint_request_fields(void) { return REQUEST_FIELDS; }
const char *predmaint_instance_fields(void) { return INSTANCE_FIELDS; }

/* An instance's "life": {} (LIFE_START) or a summary of this model (LIFE_CONTINUE) into ``st`` (first,
 * last, count, sums in the plan's key order), validated as codec.parse_life validates it. Declines
 * whatever parse_life would refuse or answer with a warning (another model's summary), and anything
 * unusual (a duplicate key), so every message comes from the Python path. */
static int life_summary(Parser *s, int64_t *flag, double *st)
{
    const Plan *pl = s->plan;
    int64_t width = pl->n_sensors + (pl->has_hi ? 1 : 0);
    TRY(expect(s, '{'));
    ws(s);
    if (peek(s) == '}') {
        ++s->p;
        *flag = LIFE_START;
        return OK;
    }
    uint64_t seen = 0, all = (1ull << (3 + 1 + pl->n_life_keys)) - 1; /* model, first, last, count, keys */
    int m;
    do {
        const unsigned char *k;
        int64_t len, bit = -1, off = 3;
        TRY(key(s, &k, &len));
        if (key_is(k, len, "model")) {
            const unsigned char *v;
            int64_t vlen;
            TRY(string(s, &v, &vlen));
            if (!key_is(v, vlen, pl->life_model))
                return DECLINE; /* another model's summary: the Python path warns */
            bit = 0;
        } else if (key_is(k, len, "first") || key_is(k, len, "last")) {
            int integer;
            bit = k[0] == 'f' ? 1 : 2;
            TRY(number(s, st + (bit - 1), &integer));
        } else if (key_is(k, len, "count")) {
            int integer;
            double c;
            TRY(number(s, &c, &integer));
            if (!integer || !(c >= 1.0) || !(c < 9007199254740992.0))
                return DECLINE; /* below 2**53 every whole number is exact */
            st[2] = c;
            bit = 3;
        } else {
            for (int64_t q = 0; q < pl->n_life_keys; ++q) {
                int64_t code = pl->life_keys[q];
                static const char *const NAMES[] = {"z", "zz", "t", "tt", "tz", "min", "max"};
                int scalar = code == LIFE_T || code == LIFE_TT;
                if (key_is(k, len, NAMES[code])) {
                    int integer;
                    if (scalar) {
                        TRY(number(s, st + off, &integer));
                    } else {
                        TRY(open_nonempty(s, '[', ']'));
                        for (int64_t j = 0; j < width; ++j) {
                            ws(s);
                            int c = peek(s);
                            if (!(c == '-' || (c >= '0' && c <= '9')))
                                return DECLINE;
                            TRY(number(s, st + off + j, &integer));
                            if (more(s, ']') != (j + 1 < width))
                                return DECLINE; /* not exactly ``width`` numbers */
                        }
                    }
                    bit = 4 + q;
                    break;
                }
                off += scalar ? 1 : width;
            }
        }
        if (bit < 0 || (seen >> bit) & 1)
            return DECLINE; /* an unknown or repeated key */
        seen |= 1ull << bit;
    } while ((m = more(s, '}')) == 1);
    if (m != 0 || seen != all || !(st[0] <= st[1]))
        return DECLINE;
    *flag = LIFE_CONTINUE;
    return OK;
}

static int instance(Parser *s)
{
    int64_t a = s->n_assets, *id = s->ids + 3 * a;
    int have_id = 0, have_readings = 0, have_life = 0;
    if (s->life_flag)
        s->life_flag[a] = LIFE_NONE;
    if (s->horizon_flag)
        s->horizon_flag[a + 1] = HORIZON_NONE;
    id[0] = ID_INDEX;
    id[1] = id[2] = 0;
    TRY(open_nonempty(s, '{', '}'));
    int m;
    do {
        const unsigned char *k;
        int64_t len;
        TRY(key(s, &k, &len));
        if (key_is(k, len, "asset_id")) {
            if (have_id++)
                return DECLINE;
            const unsigned char *v;
            int64_t vlen;
            if (peek(s) == '"') {
                TRY(string(s, &v, &vlen));
                id[0] = ID_STRING;
                id[1] = v - s->begin;
                id[2] = v + vlen - s->begin;
            } else {
                const unsigned char *start = s->p;
                double x;
                int integer;
                TRY(number(s, &x, &integer));
                if (!integer || s->p - start > 18)
                    return DECLINE; /* floats are refused by the Python path; huge ints are rare */
                id[0] = ID_INT;
                id[1] = start - s->begin;
                id[2] = s->p - s->begin;
            }
        } else if (key_is(k, len, "readings")) {
            if (have_readings++)
                return DECLINE;
            TRY(readings(s));
        } else if (key_is(k, len, "horizon")) {
            TRY(horizon_value(s, a + 1)); /* this asset's own horizon (codec.horizons) */
        } else if (key_is(k, len, "life")) {
            if (have_life++ || !s->life_flag || !s->plan->n_life)
                return DECLINE; /* no life buffer, or a model that reads none (the Python path warns) */
            TRY(life_summary(s, s->life_flag + a, s->life + a * pm_life_width(s->plan)));
        } else {
            return DECLINE; /* not in INSTANCE_FIELDS: a field this reader does not handle */
        }
    } while ((m = more(s, '}')) == 1);
    if (m < 0 || !have_readings)
        return DECLINE;
    s->starts[a + 1] = s->n_rows;
    s->n_assets = a + 1;
    return OK;
}

static int document(Parser *s)
{
    int have_instances = 0, have_explain = 0;
    TRY(open_nonempty(s, '{', '}'));
    int m;
    do {
        const unsigned char *k;
        int64_t len;
        TRY(key(s, &k, &len));
        if (key_is(k, len, "instances")) {
            if (have_instances++)
                return DECLINE;
            TRY(open_nonempty(s, '[', ']'));
            int n;
            do {
                if (s->n_assets >= s->plan->max_instances)
                    return DECLINE;
                TRY(instance(s));
            } while ((n = more(s, ']')) == 1);
            if (n < 0)
                return DECLINE;
        } else if (key_is(k, len, "explain")) {
            if (have_explain++)
                return DECLINE;
            TRY(literal(s, "false")); /* explanations need the booster: the Python path */
        } else if (key_is(k, len, "horizon")) {
            TRY(horizon_value(s, 0)); /* the request's horizon, every instance's without its own */
        } else {
            return DECLINE; /* not in REQUEST_FIELDS: a field this reader does not handle */
        }
    } while ((m = more(s, '}')) == 1);
    ws(s);
    return m == 0 && have_instances && s->p == s->end ? OK : DECLINE;
}

/* The whole request: parse ``body``, then the features of every asset's last reading into X
 * (n_assets x n_features, float32). ids[3a..3a+2]: how asset a named itself (ID_INDEX: no
 * asset_id; ID_STRING/ID_INT: its text at body offsets [start, end)). Returns OK, DECLINE (let
 * the Python path answer) or NO_MEMORY. */
int predmaint_read_request_life(const char *body, int64_t len, const Plan *pl, float *X, int64_t *ids,
                                int64_t *n_assets, int64_t *life_flag, double *life, int64_t *horizon_flag,
                                double *horizon, int64_t *readings);

int predmaint_read_request(const char *body, int64_t len, const Plan *pl, float *X, int64_t *ids,
                           int64_t *n_assets)
{
    return predmaint_read_request_life(body, len, pl, X, ids, n_assets, NULL, NULL, NULL, NULL, NULL);
}

/* predmaint_read_request with life summaries and horizons: life_flag[a] says what asset a sent (LIFE_*),
 * and row a of life (pm_life_width doubles: first, last, count, then each key's sums) holds its updated
 * summary when it sent one. horizon_flag[0] / horizon[0]: the request's horizon (HORIZON_*, its value),
 * horizon_flag[a + 1] / horizon[a + 1]: asset a's own (max_instances + 1 slots). NULL life buffers:
 * decline every life summary; NULL horizon buffers: decline every horizon. readings[a]: the number of
 * readings asset a sent (max_instances slots), so that the caller adds the Python path's warning to an
 * asset with fewer than the model's window (its features are those of the readings sent, as the Python
 * path's); NULL: decline such a request (the caller could not warn). */
int predmaint_read_request_life(const char *body, int64_t len, const Plan *pl, float *X, int64_t *ids,
                                int64_t *n_assets, int64_t *life_flag, double *life, int64_t *horizon_flag,
                                double *horizon, int64_t *readings)
{
    if (!c_locale)
        c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!pm_plan_ok(pl))
        return DECLINE;
    Parser s = {0};
    s.p = s.begin = (const unsigned char *)body;
    s.end = s.p + len;
    s.plan = pl;
    s.ids = ids;
    s.life_flag = life ? life_flag : NULL;
    s.life = life;
    s.horizon_flag = horizon ? horizon_flag : NULL;
    s.horizon = horizon;
    if (s.horizon_flag)
        s.horizon_flag[0] = HORIZON_NONE;
    s.starts = calloc((size_t)pl->max_instances + 1, sizeof *s.starts);
    s.seen = calloc((size_t)pl->n_cols, sizeof *s.seen);
    int rc = (s.starts && s.seen) ? document(&s) : NO_MEMORY;
    if (rc == OK) /* an asset with fewer readings than the model's window gets a warning from the caller */
        for (int64_t a = 0; a < s.n_assets; ++a) {
            if (readings)
                readings[a] = s.starts[a + 1] - s.starts[a];
            else if (s.starts[a + 1] - s.starts[a] < pm_min_readings(pl))
                rc = DECLINE;
        }
    if (rc == OK)
        rc = pm_assets_life(pl, s.vals, s.starts, s.n_assets, X, s.life_flag, s.life);
    *n_assets = rc == OK ? s.n_assets : 0;
    free(s.vals);
    free(s.starts);
    free(s.seen);
    free(s.prev_col);
    free(s.prev_key);
    free(s.prev_len);
    return rc;
}

