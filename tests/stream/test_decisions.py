"""The decision rule (training_src/stream/decisions.py), configured once (stacks/config.py ``decisions``),
its episodes in the stream core (one event per entering/leaving risk; replays emit nothing), and live
quality (training_src/stream/quality.py) against hand-computed cases."""

from __future__ import annotations

import json
import math

import pytest

from stacks.config import AppConfig, ConfigError
from training_src.stream import core, decisions, quality, state
from training_src.stream.decisions import AT_RISK, CLEARED, Rule, make_rule

DAY = "2026-12-06"


# ------------------------------------------------------------------------------------------ the rule
def test_costs_give_the_threshold_and_profiles_give_defaults():
    assert make_rule("rul_regression", cost_failure=10, cost_maintenance=1) == Rule(30.0, 0.1, None)
    assert make_rule("rul_regression") == Rule(30.0, 0.1, None)
    assert make_rule("rul_regression", horizon=20, threshold=0.3, min_lead=5) == Rule(20.0, 0.3, 5.0)
    assert make_rule("failure_classification") == Rule(None, 0.5, None)


@pytest.mark.parametrize("kw, where", [
    ({"threshold": 0.2, "cost_failure": 10, "cost_maintenance": 1}, "not both"),
    ({"cost_failure": 10}, "go together"),
    ({"cost_failure": 1, "cost_maintenance": 10}, "never pay"),
    ({"threshold": 0}, "threshold"),
    ({"horizon": -1}, "horizon"),
    ({"min_lead": -1}, "min_lead"),
])
def test_bad_rules_are_refused_naming_the_setting(kw, where):
    with pytest.raises(decisions.DecisionError, match=where):
        make_rule("rul_regression", **kw)


def test_a_classifier_uses_its_own_probability():
    with pytest.raises(decisions.DecisionError, match="horizon"):
        make_rule("failure_classification", horizon=30)
    rule = make_rule("failure_classification", threshold=0.7)
    assert rule.at_risk({"failure_probability": 0.7}) and not rule.at_risk({"failure_probability": 0.69})


def test_min_lead_puts_an_asset_at_risk_on_its_lower_bound():
    rule = make_rule("rul_regression", threshold=0.5, min_lead=10)
    assert rule.at_risk({"failure_probability": 0.1, "rul_lower": 10})
    assert not rule.at_risk({"failure_probability": 0.1, "rul_lower": 10.5})


def test_the_config_reader_takes_decisions_and_refuses_unknown_keys(repo):
    ctx = json.loads((repo / "cdk.json").read_text())["context"]
    cfg = AppConfig.from_context(ctx)
    assert cfg.decision_rule() == Rule(30.0, 0.1, None)
    doc = dict(ctx["predmaint"], decisions={"horizon": 20, "threshold": 0.25})
    assert AppConfig.from_dict(doc).decision_rule() == Rule(20.0, 0.25, None)
    with pytest.raises(ConfigError, match=r"predmaint.decisions: unknown key\(s\) \['horizn'\]"):
        AppConfig.from_dict(dict(ctx["predmaint"], decisions={"horizn": 20}))
    with pytest.raises(ConfigError, match=r"predmaint\.decisions: give either threshold"):
        AppConfig.from_dict(dict(ctx["predmaint"], decisions={"threshold": 0.2, "cost_failure": 5,
                                                              "cost_maintenance": 1}))
    with pytest.raises(ConfigError, match=r"predmaint\.decisions\.horizon: must be a number or null"):
        AppConfig.from_dict(dict(ctx["predmaint"], decisions={"horizon": "30"}))


def test_step_opens_and_closes_one_episode():
    rule = Rule(30.0, 0.5)
    at, since, ev = decisions.step("a", 0, False, None, {"failure_probability": 0.2}, 5, rule)
    assert (at, since, ev) == (False, None, None)
    at, since, ev = decisions.step("a", 0, at, since, {"failure_probability": 0.6, "rul": 20, "model_version": "3"},
                                   6, rule)
    assert at and since == 6 and ev["type"] == AT_RISK and ev["horizon"] == 30.0 and ev["model_version"] == "3"
    assert decisions.step("a", 0, at, since, {"failure_probability": 0.9}, 7, rule) == (True, 6, None)
    at, since, ev = decisions.step("a", 0, at, since, {"failure_probability": 0.1}, 8, rule)
    assert (at, since) == (False, None) and ev["type"] == CLEARED and ev["since"] == 6 and ev["reason"] == "answer"


def test_the_episode_survives_the_stored_form_and_old_states_read_calm():
    st = state.AssetState("a", version=1, at_risk=True, risk_since=12.0)
    back = state.decode("a", 1, state.encode(st))
    assert back.at_risk and back.risk_since == 12.0
    old = json.loads(state.encode(state.AssetState("a", version=1)))
    assert "at_risk" not in old  # a calm state's document is the one written before episodes existed
    assert not state.decode("a", 1, json.dumps(old)).at_risk


# ------------------------------------------------------------------------------------------ in the core
def threshold_scorer(at: float):
    """An endpoint answering P = 1 once the asset's last reading is at or past cycle ``at`` (else 0)."""
    def score(instances):
        preds = []
        for inst in instances:
            last = max(r["cycle"] for r in inst["readings"])
            preds.append({"asset_id": inst["asset_id"], "rul": 50.0 - last, "rul_lower": 40.0 - last,
                          "rul_upper": 60.0 - last, "failure_probability": 1.0 if last >= at else 0.0})
        return {"predictions": preds, "model_version": "7"}
    return score


def feed(records, states, scorer, info, rule, start=1):
    items = [(f"record {i}", i, r) for i, r in enumerate(records, start)]
    recs, errors = core.parse_batch(items, info)
    assert not errors
    res = core.process_batch(recs, states, scorer, info, day=DAY, horizon=30, rule=rule)
    for a, st in res.states.items():
        states[a] = state.decode(a, st.version, state.encode(st))
    return res.events


def test_one_event_per_episode_and_replays_emit_nothing(scorer, fd001_units):
    readings = fd001_units[1][:20]
    fake = threshold_scorer(10)
    rule = Rule(30.0, 0.1)
    states: dict = {}
    events = []
    records = [{"asset_id": "e1", "readings": [r]} for r in readings]
    for i in range(0, 20, 3):  # batches of three records
        events += feed(records[i:i + 3], states, fake, scorer.info, rule, start=i + 1)
    assert [e["type"] for e in events] == [AT_RISK]
    # evaluated on each state update: the batch of cycles 10-12 is one update, answered at cycle 12
    assert events[0]["time"] == 12 and events[0]["model_version"] == "7" and events[0]["rul"] == 38.0
    assert states["e1"].at_risk and states["e1"].risk_since == 12
    # the same records again (a retried batch), and the same readings resent without a position
    assert feed(records, states, fake, scorer.info, rule) == []
    assert feed([{"asset_id": "e1", "readings": readings}], states, fake, scorer.info, rule, start=100) == []
    # a failure closes the episode; the next life starts calm
    events = feed([{"asset_id": "e1", "event": "failure", "time": 21}], states, fake, scorer.info, rule, start=200)
    assert events == [{"type": CLEARED, "asset_id": "e1", "life": 0, "time": 21.0, "since": 12, "reason": "failure"}]
    assert not states["e1"].at_risk and states["e1"].life_no == 1
    again = [dict(r, cycle=r["cycle"] + 100) for r in readings[:3]]
    assert feed([{"asset_id": "e1", "readings": again}], states, fake, scorer.info, rule, start=300)[0]["life"] == 1


def test_each_asset_continues_its_own_episode_in_a_shared_batch(scorer, fd001_units):
    """A batch of several assets: each asset's episode is the one stored in its own state."""
    r = fd001_units[1]
    fake = threshold_scorer(10)
    rule = Rule(30.0, 0.5)
    states: dict = {}
    assert [e["asset_id"] for e in feed([{"asset_id": "a", "readings": r[:12]}], states, fake, scorer.info, rule)] \
        == ["a"]
    events = feed([{"asset_id": "a", "readings": r[12:14]}, {"asset_id": "b", "readings": r[:3]}],
                  states, fake, scorer.info, rule, start=10)
    assert events == [] and states["a"].at_risk and not states["b"].at_risk


def test_an_event_and_readings_in_one_batch_close_then_open(scorer, fd001_units):
    r = fd001_units[2]
    fake = threshold_scorer(5)
    states: dict = {}
    events = feed([{"asset_id": "x", "readings": r[:8]}, {"asset_id": "x", "event": "maintenance", "time": 8},
                   {"asset_id": "x", "readings": [dict(q, cycle=q["cycle"] + 8) for q in r[:6]]}],
                  states, fake, scorer.info, Rule(30.0, 0.5))
    assert [(e["type"], e["life"], e["time"]) for e in events] == [
        (AT_RISK, 0, 8), (CLEARED, 0, 8.0), (AT_RISK, 1, 14)]
    assert events[1]["reason"] == "maintenance"


def test_without_a_rule_nothing_is_evaluated(scorer, fd001_units):
    states: dict = {}
    items = [("record 1", 1, {"asset_id": "x", "readings": fd001_units[1][:12]})]
    recs, _ = core.parse_batch(items, scorer.info)
    res = core.process_batch(recs, states, threshold_scorer(5), scorer.info, day=DAY)
    assert res.events == [] and not res.states["x"].at_risk


# ------------------------------------------------------------------------------------------ quality
def answer(asset, life, time, rul, lo, hi, version="1"):
    return {"type": "answer", "asset_id": asset, "life": life, "time": time,
            "answer": {"rul": rul, "rul_lower": lo, "rul_upper": hi, "model_version": version}}


def test_quality_against_a_hand_computed_case():
    answers = [answer("a", 0, 10, 95.0, 80, 110),   # realised 90: err 5, inside
               answer("a", 0, 60, 50.0, 45, 60),    # realised 40: err 10, outside
               answer("b", 0, 30, 10.0, 0, 30),     # realised 20: err -10, inside
               answer("c", 0, 5, 70.0, 60, 80),     # c never failed: pending
               answer("a", 0, 60, 50.0, 45, 60)]    # archived twice: counted once
    outcomes = [{"type": "event", "asset_id": "a", "life": 0, "event": "failure", "time": 100},
                {"type": "event", "asset_id": "b", "life": 0, "event": "failure", "time": 50},
                {"type": "event", "asset_id": "d", "life": 0, "event": "maintenance", "time": 9}]
    risk = [{"type": AT_RISK, "asset_id": "a", "life": 0, "time": 20, "model_version": "1"},    # lead 80: early
            {"type": CLEARED, "asset_id": "a", "life": 0, "time": 30},
            {"type": AT_RISK, "asset_id": "a", "life": 0, "time": 75, "model_version": "1"},    # lead 25
            {"type": AT_RISK, "asset_id": "b", "life": 0, "time": 45, "model_version": "1"},    # lead 5
            {"type": AT_RISK, "asset_id": "c", "life": 0, "time": 5, "model_version": "1"},     # ran past H: false
            {"type": AT_RISK, "asset_id": "d", "life": 0, "time": 5, "model_version": "1"}]     # maintained: unknown
    q = quality.quality(answers, outcomes, risk, horizon=30, lead=10, cap=45,
                        last_seen={("c", 0): 40.0})["1"]
    assert q["answers"] == 3 and q["pending_answers"] == 1 and q["failures"] == 2 and q["alerts"] == 5
    assert q["rmse"] == pytest.approx(math.sqrt((25 + 100 + 100) / 3))
    # capped at 45: a (45 vs 45) 0, (45 vs 40) 5, b (10 vs 20) -10
    assert q["rmse_capped"] == pytest.approx(math.sqrt((0 + 25 + 100) / 3))
    assert q["coverage"] == pytest.approx(2 / 3)
    assert q["recall"] == 0.5            # a: last episode 25 before >= 10; b: 5 < 10
    assert q["median_lead"] == 15.0      # median(25, 5)
    assert q["precision"] == pytest.approx(2 / 4)  # a@75, b@45 within 30; a@20 not; c false; d unknown
    assert q["early_alerts"] == pytest.approx(1 / 3)  # a@20 of the 3 alerts of failed lives


def test_quality_keeps_model_versions_apart_and_says_none_without_data():
    answers = [answer("a", 0, 10, 20.0, 10, 30, "1"), answer("a", 0, 20, 12.0, 5, 15, "2")]
    outcomes = [{"type": "event", "asset_id": "a", "life": 0, "event": "failure", "time": 30}]
    q = quality.quality(answers, outcomes, [], horizon=30, cap=None)
    assert q["1"]["rmse"] == 0.0 and q["2"]["rmse"] == pytest.approx(2.0)
    assert q["1"]["failures"] == 0 and q["2"]["failures"] == 1 and q["2"]["recall"] == 0.0
    assert q["2"]["rmse_capped"] is None and q["2"]["precision"] is None and q["2"]["median_lead"] is None


def test_the_terminal_line_of_each_event():
    from predmaint.streaming import event_line

    at = {"type": AT_RISK, "asset_id": "34", "life": 0, "time": 171, "rul": 27.4, "rul_lower": 14.1,
          "rul_upper": 43.0, "failure_probability": 0.62, "horizon": 30.0, "model_version": "3", "threshold": 0.1}
    assert event_line(at) == ("AssetAtRisk 34 at 171: rul 27.4 [14.1, 43.0], P(failure within 30) 0.620 "
                              "(threshold 0.1), model 3")
    cleared = {"type": CLEARED, "asset_id": "34", "life": 0, "time": 199.0, "since": 171, "reason": "failure"}
    assert event_line(cleared) == "AssetRiskCleared 34 at 199 (failure; at risk since 171)"
