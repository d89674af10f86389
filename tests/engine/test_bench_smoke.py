"""The offline preview bench runs (on a tiny size), so it cannot rot between its runs."""
import os
import sys

import pytest

pytestmark = pytest.mark.engine
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bench"))


def test_the_offline_preview_bench_runs_on_a_tiny_stack(capsys):
    import preview_offline_scale
    preview_offline_scale.measure(3, 2, unchanged=False)
    out = capsys.readouterr().out
    assert "new preview" in out and "FAILED" not in out, out
    assert out.rstrip().endswith("ssh connections 0"), out
