/*
 * Compiled tree-ensemble predictor for the serving hot path (training_src/predmaint_serving/predictors.py loads it
 * with ctypes; no Python headers, only libc/libm, so one build serves any CPython).
 *
 * Why: xgboost's own prediction call has a fixed cost of ~0.1-0.5 ms whatever the row count, and
 * the NumPy tree walk still costs ~50-90 us for one row; walking the same trees in C costs a few
 * microseconds. It is generic: the trees arrive as flat arrays built from the booster at load
 * time, so nothing model-specific is compiled and every artifact can use it.
 *
 * Exactness: xgboost compares float32(x) < float32(split) (a missing value takes the node's default
 * branch) and adds the leaf values to the base margin in float32, tree by tree; this does the same,
 * in the same order. Build without -ffast-math so the compiler keeps that order.
 */
#include <math.h>
#include <stdint.h>

/* One node in 12 bytes: its left child (-1 on a leaf; the right child is always left + 1, as
 * xgboost numbers them), the split feature with the default-left flag in the top bit, and the split
 * value (on a leaf, the leaf value). */
typedef struct {
    int32_t left;
    uint32_t feature;
    float value;
} Node;

#define DEFAULT_LEFT 0x80000000u
#define BLOCK 64 /* rows per block: a group of trees is walked for a block of rows while in cache */
#define LANES 8  /* trees walked side by side: eight independent chains of loads overlap in the CPU */

/* One branch-free step from inner node i (the comparison's outcome is unpredictable: a mispredicted
 * jump per level would cost more than the whole step); a leaf stays where it is. */
static inline int32_t step(const Node *nodes, const float *x, int32_t i, int *moved)
{
    const Node *nd = nodes + i;
    int inner = nd->left >= 0;
    float v = x[nd->feature & ~DEFAULT_LEFT]; /* a leaf's feature field is 0: a harmless read */
    int missing = v != v;
    int go_right = missing ? !(nd->feature & DEFAULT_LEFT) : !(v < nd->value);
    *moved |= inner;
    return inner ? nd->left + go_right : i;
}

void predmaint_forest_predict(const float *X, int64_t n_rows, int64_t n_features,
                              const Node *nodes, const int32_t *roots, int64_t n_trees,
                              float base_margin, int32_t logistic, float *out)
{
    for (int64_t r0 = 0; r0 < n_rows; r0 += BLOCK) {
        int64_t n = n_rows - r0 < BLOCK ? n_rows - r0 : BLOCK;
        float acc[BLOCK];
        for (int64_t r = 0; r < n; ++r)
            acc[r] = base_margin;
        for (int64_t t0 = 0; t0 < n_trees; t0 += LANES) {
            int64_t lanes = n_trees - t0 < LANES ? n_trees - t0 : LANES;
            for (int64_t r = 0; r < n; ++r) {
                const float *x = X + (r0 + r) * n_features;
                int32_t at[LANES];
                for (int64_t k = 0; k < lanes; ++k)
                    at[k] = roots[t0 + k];
                int moved = 1;
                while (moved) {
                    moved = 0;
                    for (int64_t k = 0; k < lanes; ++k)
                        at[k] = step(nodes, x, at[k], &moved);
                }
                for (int64_t k = 0; k < lanes; ++k) /* each row adds its trees in tree order */
                    acc[r] += nodes[at[k]].value;
            }
        }
        for (int64_t r = 0; r < n; ++r)
            out[r0 + r] = logistic ? 1.0f / (1.0f + expf(-acc[r])) : acc[r]; /* float32, as xgboost */
    }
}

/* scikit-learn's histogram gradient boosting (the ``hgb`` candidate's exported trees, candidates/hgb.py):
 * explicit right children, float64 thresholds and leaves. Same arithmetic as that module's NumPy walk
 * (``Trees.margin``) and scikit-learn's raw-data predictor: go left when float64(x) <= threshold, a
 * missing value goes to its node's learned side, and the leaves are added to the baseline in float64,
 * tree by tree. The margin only: the caller applies the logistic link in NumPy, as the NumPy walk does. */
typedef struct {
    int32_t left, right; /* children, -1 on a leaf */
    uint32_t feature;    /* split feature, DEFAULT_LEFT: missing values go left */
    uint32_t unused;
    double value; /* split threshold, or the leaf value */
} Node64;

void predmaint_hgb_margin(const float *X, int64_t n_rows, int64_t n_features, const Node64 *nodes,
                          const int32_t *roots, int64_t n_trees, double baseline, double *out)
{
    for (int64_t r = 0; r < n_rows; ++r) {
        const float *x = X + r * n_features;
        double acc = baseline;
        for (int64_t t = 0; t < n_trees; ++t) {
            const Node64 *nd = nodes + roots[t];
            while (nd->left >= 0) {
                float v = x[nd->feature & ~DEFAULT_LEFT];
                int left = v != v ? (nd->feature & DEFAULT_LEFT) != 0 : (double)v <= nd->value;
                nd = nodes + (left ? nd->left : nd->right);
            }
            acc += nd->value;
        }
        out[r] = acc;
    }
}
