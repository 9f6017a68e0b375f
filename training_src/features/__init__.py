"""Feature engineering, one copy used by preprocessing, training, evaluation and inference.

Pipeline (``fit_spec`` learns on training data only; ``transform`` applies it):

1. ``validate_readings``: numeric coercion, NaN/inf policy, duplicate and ordering checks.
2. Operating regimes: k-means on standardised settings; the smallest k whose clusters explain
   ``min_explained_variance`` of the settings' variance (1 for FD001, 6 for FD002/FD004).
3. Per-regime normalisation of every sensor (z-score with that regime's training mean/std);
   sensors constant within every regime carry no information and are dropped.
4. Derived features (profile ``derived_features``: product/difference/ratio/sum/value/max/min of raw
   columns or earlier derived features, optionally as a signed distance to a limit or band),
   standardised; one-hot encoding of categorical columns with the profile's fixed level list.
5. Per-asset window features over the trailing ``sizes`` readings: mean, std, slope (per time
   unit, least squares), min, max; a truncated exponentially weighted mean per ``ewm_spans``;
   plus the time column itself (cycle count). Windows at the start of a history are partial.
6. Optional health index (``windows.health_index``): a per-regime linear fit of the capped label on
   the normalised sensors, treated as one more normalised signal (its value, window mean and slope).
   It summarises the degradation in one number that a short window can still trend.
7. RUL labels: ``max(time of asset) - time``, capped at ``label.cap`` (piecewise-linear target).
   With ``windows.cv_sizes`` / ``label.cv_caps`` preprocessing chooses the window and the cap by
   grouped cross-validation (``training_src/selection.py``) and records it in ``spec.selection``.

The fitted ``FeatureSpec`` is JSON; it is everything inference needs. ``transform_asset`` computes
the features of one asset's last reading from that asset's raw readings alone with vectorised NumPy
(no pandas), and equals the batch features of that reading (tested for every FD001 test unit).

One module per concern; import from the package (``from training_src.features import X``):

- ``spec``      ``FeatureSpec`` (JSON), feature names
- ``checks``    raw readings against the data contract, the gap policy (``MAX_GAP``)
- ``regimes``   regime detection and assignment, the health index
- ``windows``   trailing-window statistics, EWMs, whole-history running sums
- ``life``      life summaries' maths (``LifeState``; their JSON form is the request codec's)
- ``transform`` batch and served transforms
- ``fit``       fitting the spec
- ``labels``    RUL labels, clipping, the baseline's inputs, the PHM08 score
"""

from .checks import MAX_GAP, _aid, finite_or_raise, validate_readings
from .fit import fit_spec, with_choice, with_windows
from .labels import baseline_matrix, clip_rul, nasa_score, rul_labels
from .life import (
                   LIFE_SCALARS,
                   MAX_LIFE_COUNT,
                   NEW_LIFE,
                   LifeOverflowError,
                   LifeState,
                   life_fingerprint,
                   life_overflows,
)
from .regimes import assign_regimes, detect_regimes, fit_health_index
from .spec import (
                   SPEC_VERSION,
                   STD_FLOOR,
                   WHOLE_HISTORY,
                   FeatureError,
                   FeatureSpec,
                   feature_names,
                   life_names,
                   two_models,
)
from .transform import (
                   ColumnMatrix,
                   _derive,
                   _pointwise,
                   life_rows,
                   normalised,
                   reading_regimes,
                   transform,
                   transform_asset,
                   transform_last,
                   transform_last_life,
                   transform_rows,
                   with_and_without_life,
)
from .windows import SUMS_FOR, _ewm_weights, sum_keys, window_block

__all__ = [
    "LIFE_SCALARS", "MAX_GAP", "MAX_LIFE_COUNT", "NEW_LIFE", "SPEC_VERSION", "STD_FLOOR", "SUMS_FOR", "WHOLE_HISTORY",
    "ColumnMatrix", "FeatureError", "FeatureSpec", "LifeOverflowError", "LifeState", "_aid", "_derive",
    "_ewm_weights", "_pointwise", "assign_regimes", "baseline_matrix", "clip_rul", "detect_regimes",
    "feature_names", "finite_or_raise", "fit_health_index", "fit_spec", "life_fingerprint", "life_names",
    "life_overflows", "life_rows", "nasa_score", "normalised", "reading_regimes", "rul_labels", "sum_keys", "transform", "transform_asset", "transform_last",
    "transform_last_life", "transform_rows", "two_models", "validate_readings", "window_block", "with_and_without_life", "with_choice", "with_windows",
]
