"""The offline preview bench runs (on a tiny size), so it cannot rot between its runs."""

import os
import sys

import pytest

pytestmark = pytest.mark.engine
sys.path.insert(
    0,
    os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"
    ),
)


def test_the_offline_preview_bench_runs_on_a_tiny_stack(capsys):
    import preview_offline_scale

    preview_offline_scale.measure(3, 2, unchanged=False, ab_drain=True)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert [line.split("preview ")[1].split()[0] for line in lines] == ["A", "B", "A", "B"], out
    assert all(line.endswith("ssh connections 0") for line in lines), out
