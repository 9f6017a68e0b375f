"""Local mode's state store: one transaction per batch, a version check on every row (the SQLite
counterpart of the DynamoDB conditional write)."""

from __future__ import annotations

import pytest

from predmaint import streaming
from training_src.stream import state


def _st(asset: str, version: int, last: float) -> state.AssetState:
    return state.AssetState(asset, version=version, last=last, taken=int(last),
                            tail=({"cycle": last, "s": 1.5},))


def test_a_lost_race_names_the_asset_and_writes_nothing_of_the_batch(tmp_path):
    path = tmp_path / "state.sqlite"
    a, b = streaming.StateStore(path), streaming.StateStore(path)
    a.commit({"x": _st("x", 1, 1.0), "y": _st("y", 1, 1.0)})
    read = a.load(["x", "y"])
    b.commit({"y": _st("y", 2, 2.0)})  # another writer moved y on since a read it
    with pytest.raises(streaming.Conflict, match="asset 'y': its state changed since it was read"):
        a.commit({"x": _st("x", read["x"].version + 1, 3.0), "y": _st("y", read["y"].version + 1, 3.0)})
    now = b.load(["x", "y"])
    assert now["x"].version == 1 and now["x"].last == 1.0  # the batch's other row was rolled back too
    assert now["y"].version == 2 and now["y"].last == 2.0


def test_two_writers_of_a_new_asset_one_loses(tmp_path):
    path = tmp_path / "state.sqlite"
    a, b = streaming.StateStore(path), streaming.StateStore(path)
    b.commit({"z": _st("z", 1, 5.0)})
    with pytest.raises(streaming.Conflict, match="asset 'z'"):
        a.commit({"z": _st("z", 1, 7.0)})  # a first write finds a stored state: as DynamoDB's attribute_not_exists
    assert a.load(["z"])["z"].last == 5.0 and a.load(["z"])["z"].version == 1
    a.close()
    b.close()
