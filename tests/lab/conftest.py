"""Every lab module starts on clean nodes (tests/lab/clean.py)."""

import os

import pytest

import lab
from tests.lab.clean import assert_left_clean


@pytest.fixture(scope="module", autouse=True)
def clean_lab_after(request):
    """Torn down after the module's own fixtures (their destroy), so it sees what they left."""
    yield
    if os.geteuid() == 0 and lab.inventory():
        assert_left_clean(request.module.__name__)
