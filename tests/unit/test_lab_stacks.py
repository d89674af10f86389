"""The runbook lab's stack config (lab/stacks.py) is a valid stack written the operator's
way: explicit nodes with both addresses, the service account and pinned keys; no lab
shortcut. Checked against the config loader, with no lab running."""

import pytest

from components.config import load
from lab.stacks import runbook_config
from tests.unit.test_config import KEY, ROOT

pytestmark = pytest.mark.unit

INVENTORY = {
    "nodes": [
        {
            "name": f"node{i}",
            "address": f"10.231.0.{10 + i}",
            "ceph_address": f"10.231.10.{10 + i}",
            "port": 22,
            "user": "cephsvc",
            "host_key": KEY,
            "disks": [f"/dev/loop{i - 1}"],
        }
        for i in (1, 2, 3)
    ],
    "ssh": {"key_file": "/nonexistent/id_ed25519", "known_hosts": "/nonexistent/known_hosts"},
    "public_network": "10.231.10.0/24",
    "vars": {
        "client_key": KEY,
        "guest_address": "10.231.0.100/24",
        "guest_image": "/nonexistent/lab-guest.qcow2",
        "topology": "runbook",
    },
}


def test_runbook_stack_config_loads_with_explicit_nodes_and_the_ceph_network():
    config = runbook_config(INVENTORY)
    assert "cephkvm:inventory" not in config
    raw = {k.split(":", 1)[1]: v for k, v in config.items()}
    stack = load(raw, ROOT)
    assert [(n.user, n.public_address) for n in stack.nodes] == [
        ("cephsvc", "10.231.10.11"),
        ("cephsvc", "10.231.10.12"),
        ("cephsvc", "10.231.10.13"),
    ]
    assert all(n.host_key == KEY for n in stack.nodes), "pinned, not learnt"
    assert stack.ceph.public_network == "10.231.10.0/24"
    assert KEY in str(stack.kvm.vms[0].cloud_init)
    assert "{inventory:" not in str(config)
    assert stack.cockpit is not None and "cockpit-machines" in stack.packages
