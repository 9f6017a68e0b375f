import math

import pytest

from training_src.promotion import MetricsError, Thresholds, decide


def rep(rmse, fp="abc", nasa=200.0):
    return {"regression_metrics": {"rmse": {"value": rmse}, "mae": {"value": rmse * 0.8}},
            "nasa_score": nasa, "test_fingerprint": fp}


def test_first_model_needs_only_the_thresholds():
    assert decide("rul_regression", rep(12.0), None, Thresholds(max_rmse=20)).approved
    d = decide("rul_regression", rep(25.0), None, Thresholds(max_rmse=20))
    assert not d.approved and "rmse <= 20" in d.reason and d.status == "Rejected"


def test_challenger_must_strictly_beat_champion_on_same_test_set():
    assert decide("rul_regression", rep(11.9), rep(12.0)).approved
    assert not decide("rul_regression", rep(12.0), rep(12.0)).approved  # tie keeps the champion
    assert not decide("rul_regression", rep(12.5), rep(12.0)).approved
    assert not decide("rul_regression", rep(5.0, fp="other"), rep(12.0)).approved


def test_classification_higher_pr_auc_wins():
    a = {"binary_classification_metrics": {"pr_auc": {"value": 0.91}, "f1": {"value": 0.9}}, "test_fingerprint": "x"}
    b = {"binary_classification_metrics": {"pr_auc": {"value": 0.90}, "f1": {"value": 0.9}}, "test_fingerprint": "x"}
    assert decide("failure_classification", a, b).approved
    assert not decide("failure_classification", b, a).approved


def metrics_message(bad) -> str:
    """What MetricsError says about an untrustworthy rmse value."""
    if bad is None:
        return "metrics lack 'rmse'"
    if isinstance(bad, str):
        return "metric 'rmse' is not a number"
    return "metric 'rmse' is negative" if bad < 0 else "metric 'rmse' is not finite"


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -1.0, "12"])
def test_untrustworthy_metrics_raise(bad):
    with pytest.raises(MetricsError, match=metrics_message(bad)):
        decide("rul_regression", {"regression_metrics": {"rmse": {"value": bad}}, "test_fingerprint": "a"}, None)
