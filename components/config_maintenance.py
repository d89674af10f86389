"""Maintenance: which nodes are out of service, and where their VMs run meanwhile.

A node is in maintenance when `cephkvm:nodes[i].maintenance` is true or it is listed in
`cephkvm:maintenance` (for nodes that come from an inventory another tool writes). Its
VMs move to their `fallback_node`, else to the KVM node (not in maintenance, with the VM's
bridges) that holds the least VM memory so far, first in the config on a tie: the same
config always gives the same placement, so the preview shows each move before it happens.

The rules a preview can check from the config alone are here: a mon majority, a mgr and an
MDS per active rank stay up, every pool keeps min_size failure domains, every moved VM has
a node. What only the cluster knows (`ok-to-stop`, free memory) is checked by
providers/maintenance.py at `up`, before anything moves. Pure: reads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.schema.types import key


@dataclass(frozen=True)
class Maintenance:
    nodes: tuple = ()  # names, in config order
    placement: dict = field(default_factory=dict)  # VM name -> the node it runs on

    def __contains__(self, node: str) -> bool:
        return node in self.nodes


def load(values: dict, nodes: tuple, ceph, kvm, problems: list) -> Maintenance:
    """ceph, kvm: the loaded sections (components/config_ceph.py, config_kvm.py) or None."""
    names = [n.name for n in nodes]
    listed = values.get("maintenance", ())
    for i, name in enumerate(listed):
        if name not in names:
            problems.append(
                f"{key(f'maintenance[{i}]')}: no node named {name!r} in "
                f"{key('nodes')} (nodes: {', '.join(names)})"
            )
    down = tuple(n.name for n in nodes if n.maintenance or n.name in listed)
    if down and ceph is not None:
        _check_ceph(down, ceph, problems)
    placement = _place(down, nodes, kvm, ceph, problems) if kvm is not None else {}
    return Maintenance(nodes=down, placement=placement)


# --- Ceph: what must keep running ----------------------------------------------------------


def _check_ceph(down: tuple, ceph, problems: list) -> None:
    where = key("maintenance")
    said = ", ".join(down)
    mons = [m for m in ceph.mons if m not in down]
    if len(mons) <= len(ceph.mons) // 2:
        problems.append(
            f"{where}: {said} would stop {len(ceph.mons) - len(mons)} of the "
            f"{len(ceph.mons)} mons; a quorum needs {len(ceph.mons) // 2 + 1} "
            "running: put fewer nodes in maintenance at once"
        )
    if ceph.mgrs and not [m for m in ceph.mgrs if m not in down]:
        problems.append(
            f"{where}: {said} would stop every mgr; keep a node with the mgr "
            "role out of maintenance"
        )
    ranks = sum(fs["max_mds"] for fs in ceph.filesystems)
    mdss = [m for m in ceph.mdss if m not in down]
    if ranks and len(mdss) < ranks:
        problems.append(
            f"{where}: {said} would leave {len(mdss)} MDS for {ranks} active "
            "rank(s) of the filesystems; keep more MDS nodes out of maintenance"
        )
    for pool in ceph.pools:
        left, needed = _domains_left(pool, ceph.osds, down), _min_size(pool)
        if ceph.osds and left < needed:
            problems.append(
                f"{where}: {said} would leave pool {pool['name']} "
                f"{left} failure domain(s) with OSDs but it needs {needed} "
                "(min_size) for I/O: put fewer nodes in maintenance at once"
            )


def _min_size(pool: dict) -> int:
    """Ceph's defaults: size - size/2 for replicas (2 of 3), k+1 for erasure coding."""
    if pool.get("min_size"):
        return pool["min_size"]
    if pool.get("type") == "erasure":
        return pool["ec_k"] + 1
    size = pool.get("size") or 3
    return size - size // 2


def _domains_left(pool: dict, osds: tuple, down: tuple) -> int:
    running = [(node, device) for node, device in osds if node not in down]
    if pool.get("type") == "erasure" and pool.get("ec_failure_domain") == "osd":
        return len(running)
    return len({node for node, _ in running})


# --- KVM: where each VM runs ---------------------------------------------------------------


def _place(down: tuple, nodes: tuple, kvm, ceph, problems: list) -> dict:
    hosts = [n.name for n in nodes if "kvm" in n.roles and n.name not in down]
    load_mib = dict.fromkeys(hosts, 0)
    for vm in kvm.vms:  # the VMs that stay count first: moved ones go to the emptiest node
        if vm.node in load_mib:
            load_mib[vm.node] += vm.memory_mib
    placement = {}
    for i, vm in enumerate(kvm.vms):
        if vm.node not in down:
            placement[vm.name] = vm.node
            continue
        target = _target(vm, hosts, load_mib, kvm.bridges)
        if target is None:
            problems.append(
                f"{key(f'vms[{i}].node')}: {vm.node} is in maintenance and no "
                f"other KVM node can run VM {vm.name} (one not in maintenance, "
                "with its bridges); set its fallback_node or leave "
                f"{vm.node} in service"
            )
            continue
        if not _shared(kvm, ceph, vm.node, target):
            problems.append(
                f"{key(f'vms[{i}].node')}: {vm.node} is in maintenance, but VM "
                f"{vm.name}'s disk under {kvm.storage} is on no CephFS mount of the stack "
                f"on {vm.node} and {target}, so moving it live would lose it; mount "
                f"CephFS there, or set {key('vm_storage_shared')} if it is shared storage"
            )
        placement[vm.name] = target
        load_mib[target] += vm.memory_mib
    return placement


def _shared(kvm, ceph, *nodes: str) -> bool:
    """The VMs' storage is the same directory on these nodes: the operator says so, or it
    lies in a CephFS mount the stack makes on each. Without Ceph in the stack, the move
    itself checks the filesystem (vm_migrate.storage_is_shared)."""
    if kvm.storage_shared or ceph is None:
        return True
    root = kvm.storage.rstrip("/") + "/"
    return all(
        any(
            root.startswith(m["mountpoint"].rstrip("/") + "/")
            for m in ceph.mounts
            if m["node"] == n
        )
        for n in nodes
    )


def _target(vm, hosts: list, load_mib: dict, bridges: tuple) -> str | None:
    fits = [h for h in hosts if _has_bridges(vm, h, bridges)]
    if vm.fallback_node in fits:
        return vm.fallback_node
    return min(fits, key=lambda h: (load_mib[h], hosts.index(h))) if fits else None


def _has_bridges(vm, node: str, bridges: tuple) -> bool:
    for nic in vm.nics:
        found = [b for b in bridges if b.name == nic.bridge or b.network == nic.network]
        if not found or node not in found[0].nodes:
            return False
    return True
