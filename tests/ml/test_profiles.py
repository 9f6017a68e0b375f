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


@pytest.mark.parametrize("key_path, message", [
    ("label.capp", r"label.capp: unknown key; known keys of label are \['cap', 'column', 'cv_caps', 'type'\]"),
    ("format.delimiter", r"format.delimiter: unknown key; known keys of format are \['columns', 'header', "
                         r"'rename', 'type'\]"),
    ("windows.size", r"windows.size: unknown key; known keys of windows are \['cv_sizes', 'ewm_spans', 'health_index', "
                     r"'life_models', 'life_stats', 'sizes', 'stats'\]"),
    ("regimes.k", r"regimes.k: unknown key; known keys of regimes are \['max_clusters', 'min_explained_variance'\]"),
    ("split.test", r"split.test: unknown key; known keys of split are \['test_fraction', 'validation_fraction'\]"),
    ("files.tests", r"files.tests: unknown key; known keys of files are \['data', 'test', 'test_rul', 'train'\]"),
    ("colour", r"colour: unknown key; known keys are \["),
])
def test_an_unknown_key_at_any_level_is_refused_naming_its_path(key_path, message):
    doc = _doc()
    *parents, leaf = key_path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    node[leaf] = "cmapss/x.txt" if parents == ["files"] else 1
    with pytest.raises(ProfileError, match=r"^profile test.json: " + message):
        parse_profile(doc, "FD001", source="test.json")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["format"].update(header="yes"), r"format.header: must be true or false, got 'yes'"),
    (lambda d: d["format"].update(type="tsv"), r"format.type: must be one of"),
    (lambda d: d["files"].update(train="train_{subset}.txt"), r"files.train: must be a relative path inside the "
                                                               r"dataset's folder"),
    (lambda d: d["files"].update(train="../etc/{subset}.txt"), r"files.train: must be a relative path"),
    (lambda d: d["files"].update(train="other/train_{subset}.txt"), r"files: every file must be in the same "
                                                                     r"dataset folder"),
    (lambda d: d["files"].update(train="cmapss/train_{unit}.txt"), r"files.train: only \{subset\} may appear"),
    (lambda d: d.update(name="my fleet"), r"name: 'my fleet': use 1-64 letters"),
    (lambda d: d.update(default_subset="FD009"), r"default_subset: 'FD009' is not one of subsets"),
    (lambda d: d.update(metrics=["rmse", "accuracy"]), r"metrics: unknown metric\(s\) \['accuracy'\] for "
                                                       r"rul_regression"),
    (lambda d: d.update(min_readings=True), r"min_readings: must be a whole number >= 1, got True"),
    (lambda d: d["regimes"].update(max_clusters=True), r"regimes.max_clusters: must be a whole number"),
    (lambda d: d["split"].update(test_fraction=False), r"split.test_fraction: must be in \[0, 0.9\)"),
    (lambda d: d["label"].update(column="x"), r"label.column: only binary labels read a column"),
    (lambda d: d.update(setting_columns=["setting_1", "sensor_2"]), r"sensor_columns: 'sensor_2' is already used "
                                                                     r"in setting_columns"),
    (lambda d: d.update(time_column="sensor_1"), r"sensor_columns: 'sensor_1' is already used in time_column"),
    (lambda d: d.update(categorical_columns={"setting_1": ["a", "a"]}), r"categorical_columns.setting_1: lists a "
                                                                        r"level twice"),
    (lambda d: d["format"].update(rename={"unit": "cycle"}), r"format.rename: gives two columns the same name "
                                                             r"\['cycle'\]"),
    (lambda d: d.update(description=5), r"description: must be a string"),
])
def test_nested_values_are_checked_naming_their_path(mutate, message):
    doc = _doc()
    mutate(doc)
    with pytest.raises(ProfileError, match=message):
        parse_profile(doc, "FD001", source="test.json")


def test_a_profile_file_with_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "twice.json"
    text = json.dumps(_doc())
    path.write_text(text[:-1] + ', "label": {"type": "rul", "cap": 99}}')  # JSON parsers keep the last silently
    with pytest.raises(ProfileError, match=rf"profile {path}: key 'label' is given twice"):
        load_profile(path)
    path.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(path)


def test_names_and_paths_are_told_apart():
    from training_src.profiles import is_profile_path

    assert not is_profile_path("cmapss") and not is_profile_path("my-fleet")
    assert is_profile_path("./cmapss") and is_profile_path("fleet.json") and is_profile_path("/x/y")
    with pytest.raises(ProfileError, match=r"unknown profile 'fleet'.*or pass the path of your own profile JSON"):
        load_profile("fleet")
    with pytest.raises(ProfileError, match=r"profile file not found: missing\.json"):
        load_profile("missing.json")
