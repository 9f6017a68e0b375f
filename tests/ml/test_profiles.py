import copy
import json

import pytest

from training_src.profiles import ProfileError, available_profiles, load_profile, parse_profile


def test_shipped_profiles_load_for_every_subset():
    assert {"cmapss", "ai4i2020"} <= set(available_profiles())
    for subset in ("FD001", "FD002", "FD003", "FD004"):
        p = load_profile("cmapss", subset)
        assert p.task == "rul_regression" and p.file("train") == f"cmapss/train_{subset}.txt"
    a = load_profile("ai4i2020")
    assert a.task == "failure_classification" and a.label.column == "machine_failure"
    # leakage guard: ids and failure-mode flags are never features
    assert {"udi", "product_id", "twf", "hdf", "pwf", "osf", "rnf"} <= set(a.exclude_columns)
    assert not set(a.exclude_columns) & set(a.sensor_columns)


def _doc():
    return json.loads(load_profile("cmapss").raw and json.dumps(load_profile("cmapss").raw))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(sensor_columns=["sensor_1", "sensor_99"]), "unknown column 'sensor_99'"),
    (lambda d: d["windows"].update(sizes=[-1, 5]), "window sizes must be >= 0"),
    (lambda d: d["windows"].update(stats=["mean", "median"]), "unknown statistic"),
    (lambda d: d.pop("label"), "a label rule is required"),
    (lambda d: d["label"].update(cap=-5), "label.cap"),
    (lambda d: d.update(task="forecast"), "task"),
    (lambda d: d.update(colour="red"), r"colour: unknown key; known keys are \[.categorical_columns."),
    (lambda d: d["split"].update(validation_fraction=0), "validation_fraction"),
    (lambda d: d.update(exclude_columns=["sensor_2"]), "also used as features"),
])
def test_bad_profiles_say_what_is_wrong(mutate, message):
    doc = copy.deepcopy(_doc())
    mutate(doc)
    with pytest.raises(ProfileError, match=message):
        parse_profile(doc, "FD001", source="test.json")


def test_unknown_subset_and_profile():
    with pytest.raises(ProfileError, match="unknown subset 'FD009'"):
        load_profile("cmapss", "FD009")
    with pytest.raises(ProfileError, match="unknown profile 'pumps'"):
        load_profile("pumps")


def test_users_fleet_is_a_profile_file(tmp_path):
    doc = {
        "name": "pumps", "task": "rul_regression",
        "format": {"type": "csv", "header": True},
        "files": {"train": "pumps/history.csv"},
        "id_column": "pump", "time_column": "hour",
        "setting_columns": ["load"], "sensor_columns": ["vibration", "temperature"],
        "label": {"type": "rul", "cap": 500},
        "regimes": {"max_clusters": 3, "min_explained_variance": 0.95},
        "windows": {"sizes": [4, 12], "stats": ["mean", "slope"]},
        "split": {"validation_fraction": 0.2, "test_fraction": 0.2},
    }
    path = tmp_path / "pumps.json"
    path.write_text(json.dumps(doc))
    p = load_profile(path)
    assert p.name == "pumps" and p.windows.sizes == (4, 12) and p.label.cap == 500
    assert p.required_columns == ("pump", "hour", "load", "vibration", "temperature")


def _ai4i_doc():
    return copy.deepcopy(load_profile("ai4i2020").raw)


def _margin(**d):
    return {"name": "m", "op": "product", "columns": ["tool_wear", "torque"], **d}


@pytest.mark.parametrize("derived, message", [
    ([_margin(limit_by="colour", limit={"L": 1})], r"derived_features\[0\].limit_by: 'colour' is not a categorical"),
    ([_margin(limit_by="type", limit={"L": 1, "M": 2})], r"levels must be exactly \['L', 'M', 'H'\].*missing \['H'\]"),
    ([_margin(limit_by="type", limit={"L": 1, "M": 2, "H": 3, "X": 4})], r"unknown \['X'\]"),
    ([_margin(limit_by="type", limit=5)], "map every level of 'type'"),
    ([_margin(limit={"L": 1, "M": 2, "H": 3})], "per-level limits need limit_by"),
    ([_margin(limit=0)], "limit: must be a non-zero number"),
    ([_margin(limit="high")], "limit: must be a non-zero number"),
    ([_margin(band=[9000, 3500])], r"band: must be \[low, high\] with low < high"),
    ([_margin(band=[1])], "band: must be"),
    ([_margin(limit=1, band=[0, 2])], "limit or band, not both"),
    ([_margin(threshold=3)], r"derived_features\[0\].threshold: unknown key; known keys of derived_features\[0\] are"),
    ([{"name": "m", "op": "value", "columns": ["torque", "tool_wear"]}], "value takes exactly 1 input"),
    ([{"name": "m", "op": "max", "columns": ["torque"]}], "max needs at least two inputs"),
    ([{"name": "m", "op": "max", "columns": ["torque", "tool_wear"], "features": ["x", "y"]}],
     "either columns .* or features"),
    ([{"name": "m", "op": "max", "features": ["a", "b"]}, _margin(name="a"), _margin(name="b")],
     r"derived_features\[0\].features: \['a', 'b'\] are not derived features declared before"),
    ([_margin(name="a"), _margin(name="a")], r"derived_features\[1\].name: 'a' is declared twice"),
    ([_margin(op="power")], r"op: must be one of"),
    ([{"name": "m", "op": "value", "columns": ["speed"]}], r"unknown column 'speed'"),
])
def test_bad_derived_feature_declarations_say_what_is_wrong(derived, message):
    doc = _ai4i_doc()
    doc["derived_features"] = derived
    with pytest.raises(ProfileError, match=message):
        parse_profile(doc, source="fleet.json")


def test_margin_declarations_parse():
    p = load_profile("ai4i2020")
    by_name = {d.name: d for d in p.derived_features}
    assert by_name["overstrain_margin"].limit == {"L": 11000.0, "M": 12000.0, "H": 13000.0}
    assert by_name["overstrain_margin"].limit_by == "type"
    assert by_name["power_margin"].band == (3500.0, 9000.0)
    assert by_name["heat_dissipation_margin"].features == ("temperature_margin", "speed_margin")
    assert by_name["heat_dissipation_margin"].columns == ()
