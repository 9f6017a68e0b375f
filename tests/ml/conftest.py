"""Fixtures of the ML tests (the session-wide ones are in tests/conftest.py)."""

import pytest


@pytest.fixture(scope="module")
def units(fd001_units):
    """FD001's test engines as request readings: unit -> its readings."""
    return fd001_units
