"""The runbook lab's stack config, written out as an operator would: explicit nodes (two
addresses each, the service account, pinned host keys), no `cephkvm:inventory` shortcut.
Everything else is the lab stack's (stacks/Pulumi.lab.yaml), so the two stay alike."""

import re

import yaml

from . import const

VAR = re.compile(r"\{inventory:([A-Za-z0-9_]+)\}")


def runbook_config(inv: dict) -> dict:
    """The `config:` mapping of a stack for the lab `inv` (a runbook lab's inventory)."""
    with open(const.REPO / "stacks" / "Pulumi.lab.yaml") as f:
        config = yaml.safe_load(f)["config"]
    config.pop("cephkvm:inventory")
    config = _fill(config, inv["vars"])
    nodes = [
        {k: n[k] for k in ("name", "address", "ceph_address", "user", "host_key", "disks")}
        for n in inv["nodes"]
    ]
    ceph, kvm = config["cephkvm:ceph"], config["cephkvm:kvm"]
    return {
        "cephkvm:nodes": nodes,
        "cephkvm:ssh": {"key_file": inv["ssh"]["key_file"]},
        **config,
        "cephkvm:ceph": {"public_network": inv["public_network"], **ceph},
        # the runbook's management tools: nodes with their own /etc can hold its account
        "cephkvm:kvm": {**kvm, "cockpit": True},
    }


def _fill(value, found: dict):
    if isinstance(value, str):
        return VAR.sub(lambda m: found[m.group(1)], value)
    if isinstance(value, dict):
        return {k: _fill(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, found) for v in value]
    return value
