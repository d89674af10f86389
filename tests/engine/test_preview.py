"""The real Pulumi CLI previews the runbook's reference layout with no host reachable."""

import os

import pytest

from tests.bad_inputs import BAD
from tests.cli import Project

pytestmark = pytest.mark.engine
isolated = os.geteuid() == 0  # unshare --net needs root; otherwise rely on no connect lines


@pytest.fixture
def example(tmp_path):
    return Project(str(tmp_path), "example")


def steps_by_type(preview: dict) -> dict:
    found: dict = {}
    for step in preview["steps"]:
        kind = step["urn"].split("::")[2].split("$")[-1]
        found.setdefault(kind, []).append(step["op"])
    return found


def test_example_previews_offline_with_readable_types(example):
    preview = example.preview_json(netns_isolated=isolated)
    found = steps_by_type(preview)
    dynamic = "pulumi-python:dynamic/cephkvm:"
    expected = {
        "Node": 3,
        "NodePrep": 3,
        "CephCluster": 1,
        "CephConf": 3,
        "CephMon": 3,
        "CephConfig": 1,
        "CephMgr": 3,
        "CephDashboard": 1,
        "CephMds": 3,
        "CephOsd": 3,
        "CephPool": 2,
        "CephFilesystem": 1,
        "CephFSMount": 3,
        "KvmBridge": 3,
        "CloudVM": 1,
        "MigrationKey": 1,
        "MigrationAccess": 3,
        "Cockpit": 3,
        "LoginPassword": 1,
        "DestroyGuard": 1,
    }
    for kind, count in expected.items():
        assert found[dynamic + kind] == ["create"] * count, kind
    assert found["cephkvm:index:PreparedNode"] == ["create"] * 3
    assert not [line for line in example.ssh_log_lines() if line.startswith("connect")]
    for step in preview["steps"]:
        if step["urn"].endswith("$" + dynamic + "CloudVM::" + step["urn"].split("::")[-1]):
            # Its own node's bridge, mount, prep and migration access, not every node's, and
            # no other node's connection: the state grows with VMs plus nodes.
            node = step["newState"]["inputs"]["node"]
            deps = [urn.split("::")[-1] for urn in step["newState"]["dependencies"]]
            assert {d for d in deps if not d.endswith("-facts")} == {
                f"{node}-prep",
                f"{node}-br0",
                f"{node}-migration",
                f"mount-{node}-mnt-cephfs",
            }, deps


def test_bad_config_fails_preview_naming_the_key(example):
    example.edit_config(lambda c: c["cephkvm:nodes"][1].update(address="osd 2"))
    proc = example.run("preview", check=False, netns_isolated=isolated)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "cephkvm:nodes[1].address" in out and "is not an IP address" in out
    assert "Traceback" not in out
    assert example.ssh_log_lines() == []


@pytest.fixture(scope="module")
def example_once(tmp_path_factory):
    return Project(str(tmp_path_factory.mktemp("bad")), "example")


@pytest.mark.parametrize("what, change, where", BAD, ids=[row[0] for row in BAD])
def test_bad_input_fails_preview_naming_the_key_and_touches_no_host(
    example_once, what, change, where
):
    proc = example_once.preview_with(change, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, what
    assert f"cephkvm:{where}" in out and "Traceback" not in out, (what, out[-2000:])
    assert example_once.ssh_log_lines() == []
