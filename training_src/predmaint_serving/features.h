/*
 * The feature kernel's interface (features.c), shared by the request reader (request.c) and fleet
 * scoring. training_src/predmaint_serving/reader.py mirrors ``Plan`` field for field with ctypes.
 */
#ifndef PREDMAINT_FEATURES_H
#define PREDMAINT_FEATURES_H

#include <stdint.h>

enum { OK = 0, DECLINE = 1, NO_MEMORY = 2 };
enum { STAT_MEAN = 0, STAT_STD = 1, STAT_SLOPE = 2, STAT_MIN = 3, STAT_MAX = 4 };

#define TRY(x)                                                                                  \
    do {                                                                                        \
        int rc_ = (x);                                                                          \
        if (rc_ != OK)                                                                          \
            return rc_;                                                                         \
    } while (0)

/* What the model's FeatureSpec says about the request and its features (all int64/double so
 * the ctypes mirror is trivial). Column indices refer to the reading matrix (time is column 0). */
typedef struct {
    int64_t n_cols;          /* columns a reading must carry */
    const char *names;       /* their names, concatenated */
    const int64_t *name_end; /* name j is names[name_end[j-1]:name_end[j]] (name_end[-1] = 0) */
    int64_t max_instances, max_readings;
    int64_t n_settings;
    const int64_t *setting_col;
    int64_t n_sensors;
    const int64_t *sensor_col;
    int64_t n_regimes;
    const double *center, *scale, *centroids; /* centroids: n_regimes x n_settings */
    const double *mean, *std;                 /* n_regimes x n_sensors */
    int64_t n_sizes;
    const int64_t *sizes; /* 0 = whole history */
    int64_t n_stats;
    const int64_t *stats;
    int64_t n_spans;
    const int64_t *span_len;    /* 3 * span readings per EWM */
    const double *ewm_weights;  /* concatenated, span_len[i] each, oldest first */
    int64_t time_feature;       /* 1: the first feature is the time of the last reading */
    int64_t n_features;
    int64_t has_hi;             /* 1: a health index is one more channel after the sensors */
    const double *hi_w, *hi_b;  /* n_regimes x n_sensors weights, n_regimes intercepts */
    int64_t n_life;             /* trailing life-summary features (channels x n_life_stats): NaN without a summary */
    int64_t n_life_stats;
    const int64_t *life_stats;  /* STAT_* of each life feature per channel */
    int64_t n_life_keys;
    const int64_t *life_keys;   /* LIFE_* running sums a summary carries, in the codec's order */
    const char *life_model;     /* the summary's "model" (features.life_fingerprint), NUL-terminated */
} Plan;

/* A life summary's running sums (features.windows.sum_keys): per channel, or one number (t, tt). */
enum { LIFE_Z = 0, LIFE_ZZ = 1, LIFE_T = 2, LIFE_TT = 3, LIFE_TZ = 4, LIFE_MIN = 5, LIFE_MAX = 6 };
/* What an asset sent as its life summary (flag per asset, request.c -> features.c). */
enum { LIFE_NONE = 0, LIFE_START = 1, LIFE_CONTINUE = 2 };

/* Doubles of one asset's summary in the life buffer: first, last, count, then every key's sums. */
__attribute__((visibility("hidden"))) int64_t pm_life_width(const Plan *pl);

/* Whether the kernel can fill this plan: the feature layout adds up, the settings fit its scratch. */
__attribute__((visibility("hidden"))) int pm_plan_ok(const Plan *pl);

/* Readings an asset needs for full-accuracy features (features.FeatureSpec.min_readings): the
 * longest window; 0 when a whole-history window makes every count acceptable. */
__attribute__((visibility("hidden"))) int64_t pm_min_readings(const Plan *pl);

/* Features of the last reading of each asset a (rows starts[a]:starts[a+1] of vals, n_cols
 * columns in the plan's order, time-ordered) into X (n_assets x n_features, float32). OK,
 * DECLINE (an asset without readings, or a feature that overflows) or NO_MEMORY. */
__attribute__((visibility("hidden"))) int pm_assets(const Plan *pl, const double *vals, const int64_t *starts,
                                                     int64_t n_assets, float *X);

/* pm_assets with life summaries: asset a's flag life_flag[a] (LIFE_*) and summary (row a of life,
 * pm_life_width doubles: as read from the request; replaced by the updated summary) give its life
 * features, as features.life._life_block does. DECLINE when a summary or its features overflow (the
 * codec's 400). life_flag NULL: every asset sent none. */
__attribute__((visibility("hidden"))) int pm_assets_life(const Plan *pl, const double *vals, const int64_t *starts,
                                                          int64_t n_assets, float *X, const int64_t *life_flag,
                                                          double *life);

#endif
