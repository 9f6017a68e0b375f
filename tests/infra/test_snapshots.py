"""Snapshots of every stack's template (asset hashes normalised), committed under __snapshots__."""

from __future__ import annotations

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from tests.infra.conftest import normalise

STACKS = ["Predmaint-Data", "Predmaint-Training", "Predmaint-Endpoint", "Predmaint-Monitoring"]


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def test_the_app_has_these_stacks(synth):
    assert sorted(synth.templates) == sorted(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_template_snapshot(synth, snapshot_json, stack):
    assert normalise(synth.templates[stack]) == snapshot_json
