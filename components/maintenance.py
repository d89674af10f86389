"""The Maintenance resource of a stack whose config puts nodes in maintenance
(components/config_maintenance.py says which, and where their VMs run meanwhile).

Everything that stops or moves for it depends on it: the daemons of those nodes and every
VM. Its plan is logged once, so a preview says in one paragraph what `up` will do.
"""

from __future__ import annotations

import pulumi

from components.config import StackConfig
from providers.maintenance import Maintenance


def gate(stack: StackConfig, nodes: dict, admin: list, after: list) -> Maintenance | None:
    """None unless a node is in maintenance. nodes: name -> PreparedNode; admin: the
    access of the cluster's admin nodes (empty without Ceph); after: what it needs first."""
    down = stack.maintenance.nodes
    if not down:
        return None
    moves = _moves(stack)
    pulumi.log.info(_plan(stack, moves))
    return Maintenance(
        {
            "cluster_name": stack.ceph.cluster_name if stack.ceph else "ceph",
            "admin": admin,
            "nodes": [_roles(stack, n) for n in down],
            "moves": moves,
            "targets": [nodes[n].access for n in sorted({m["to"] for m in moves})],
        },
        pulumi.ResourceOptions(depends_on=after, additional_secret_outputs=["admin", "targets"]),
    )


def _roles(stack: StackConfig, name: str) -> dict:
    cfg = stack.ceph
    if cfg is None:
        return {"name": name, "mon": False, "mgr": False, "mds": False, "osd": False}
    return {
        "name": name,
        "mon": name in cfg.mons,
        "mgr": name in cfg.mgrs,
        "mds": name in cfg.mdss,
        "osd": any(node == name for node, _ in cfg.osds),
    }


def _moves(stack: StackConfig) -> list[dict]:
    placement = stack.maintenance.placement
    vms = stack.kvm.vms if stack.kvm else ()
    return [
        {"vm": vm.name, "memory_mib": vm.memory_mib, "to": placement[vm.name]}
        for vm in vms
        if placement.get(vm.name, vm.node) != vm.node
    ]


def _plan(stack: StackConfig, moves: list) -> str:
    said = []
    for name in stack.maintenance.nodes:
        roles = [r for r, on in _roles(stack, name).items() if r != "name" and on]
        said.append(
            f"{name}: its {', '.join(roles)} daemons stop" if roles else f"{name}: no Ceph daemon"
        )
    said += [f"VM {m['vm']} moves to {m['to']}" for m in moves]
    return (
        "maintenance: "
        + "; ".join(said)
        + (
            " (noout on its OSDs only)"
            if any(_roles(stack, n)["osd"] for n in stack.maintenance.nodes)
            else ""
        )
    )
