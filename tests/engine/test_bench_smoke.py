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

    preview_offline_scale.measure(3, 2, unchanged=False, ab="engine-log")
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert [line.split("preview ")[1].split()[0] for line in lines] == ["A", "B", "A", "B"], out
    assert all(line.endswith("ssh connections 0") for line in lines), out
    # B ran with the project's PULUMI_HOME, where make setup turned the engine's log off.
    home = os.path.join(preview_offline_scale.ROOT, ".tools", "pulumi-home")
    assert not os.path.isdir(os.path.join(home, "logs")), os.listdir(home)


def test_the_engine_floor_the_lab_preview_is_compared_with_previews(tmp_path):
    """preview_and_connections' reference: an empty program through the same CLI."""
    import preview_and_connections as bench

    floor = bench.empty_program(str(tmp_path))
    floors, again = bench.against_floor(floor, floor, rounds=1)
    assert len(floors) == len(again) == 1 and floors[0] > 0
    steps = floor.preview_json()["steps"]
    assert {s["urn"].split("::")[2] for s in steps} == {"pulumi:pulumi:Stack"}, steps


def test_the_dynamic_provider_floor_bench_settles_its_no_op_resources(tmp_path):
    """preview_floor's no-op stacks: settled, so their previews are unchanged ones."""
    import preview_floor

    project = preview_floor.program(str(tmp_path), 2)
    out = project.run("preview").stdout
    assert "3 unchanged" in out and "create" not in out, out  # the stack and two things
