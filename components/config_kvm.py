"""The rules of the KVM part of the stack config that span values or sections: bridges and
VMs on known nodes, NICs on bridges the stack makes there, passwords for known VMs. The
shape of `cephkvm:bridges`, `vms`, `vm_storage` is providers/schema/kvm.py;
`cephkvm:vm_passwords` holds secrets (`pulumi config set --secret --path
'cephkvm:vm_passwords.virt-01' PASSWORD`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.schema.kvm import Vm
from providers.schema.types import key, unique


@dataclass(frozen=True)
class KvmConfig:
    storage: str = "/mnt/cephfs"
    storage_shared: bool = False
    bridges: tuple = ()  # Bridge, with nodes and network filled in
    vms: tuple = ()  # Vm
    passwords: dict = field(default_factory=dict)  # VM name -> password (secret)


def load(values: dict, nodes: tuple, problems: list, left_out: set = frozenset()) -> KvmConfig:
    """left_out: nodes listed with a problem of their own; naming one is not another."""
    names = [n.name for n in nodes]
    kvm_nodes = [n.name for n in nodes if "kvm" in n.roles]
    storage = values.get("vm_storage", KvmConfig.storage)
    bridges = _bridges(values.get("bridges", ()), names, kvm_nodes, left_out, problems)
    passwords = values.get("vm_passwords", {})
    vms = _vms(values.get("vms", ()), names, kvm_nodes, bridges, storage, left_out, problems)
    for name in passwords:
        if name not in [vm.name for vm in vms]:
            problems.append(f"{key(f'vm_passwords.{name}')}: no VM of that name in {key('vms')}")
    return KvmConfig(
        storage=storage,
        storage_shared=values.get("vm_storage_shared", False),
        bridges=bridges,
        vms=vms,
        passwords=dict(passwords),
    )


# --- bridges ------------------------------------------------------------------------------


def _bridges(bridges: tuple, names: list, kvm_nodes: list, left_out: set, problems: list) -> tuple:
    out = []
    for i, bridge in unique(bridges, "bridges", problems):
        path = f"bridges[{i}]"
        nodes = bridge.nodes if bridge.nodes is not None else tuple(kvm_nodes)
        for n in nodes:
            if n not in names and n not in left_out:
                problems.append(f"{key(path + '.nodes')}: no node named {n!r} in {key('nodes')}")
        for n in bridge.addresses:
            if n not in nodes and n not in left_out:
                problems.append(
                    f"{key(f'{path}.addresses.{n}')}: {n!r} is not one of this bridge's nodes"
                )
        out.append(
            bridge.model_copy(update={"nodes": nodes, "network": bridge.network or bridge.name})
        )
    return tuple(out)


# --- VMs ----------------------------------------------------------------------------------


def _vms(
    vms: tuple,
    names: list,
    kvm_nodes: list,
    bridges: tuple,
    storage: str,
    left_out: set,
    problems: list,
) -> tuple:
    out = []
    why = "VM names are unique in the cluster (they migrate between nodes)"
    for i, vm in unique(vms, "vms", problems, why):
        path = f"vms[{i}]"
        on_node = vm.node in names
        if not on_node and vm.node not in left_out:
            problems.append(
                f"{key(path + '.node')}: {vm.node!r} is not a node in "
                f"{key('nodes')} (nodes: {', '.join(names)})"
            )
        if vm.fallback_node not in (None, *left_out) and (
            vm.fallback_node not in kvm_nodes or vm.fallback_node == vm.node
        ):
            problems.append(
                f"{key(path + '.fallback_node')}: {vm.fallback_node!r} must be "
                f"another node with the kvm role (KVM nodes: "
                f"{', '.join(kvm_nodes) or 'none'})"
            )
        _check_nics(vm, path, bridges, problems, on_node)
        _check_backup_target(vm, path, storage, problems)
        if vm.rollback_to and vm.rollback_to not in vm.snapshots:
            problems.append(
                f"{key(path + '.rollback_to')}: {vm.rollback_to!r} is not one of its snapshots "
                f"({', '.join(vm.snapshots) or 'none'}); list it in {key(path + '.snapshots')}"
            )
        out.append(vm)
    _check_restores(out, problems)
    return tuple(out)


def _check_backup_target(vm: Vm, path: str, storage: str, problems: list) -> None:
    """Backups never go where the VMs' own files are: a snapshot there would hold them, and
    a VM's delete could take them."""
    if vm.backup is None:
        return
    target = vm.backup.target.rstrip("/") + "/"
    for own in ("templates", "virtualmachines", "config"):
        mine = f"{storage.rstrip('/')}/{own}/"
        if target.startswith(mine) or target == storage.rstrip("/") + "/":
            problems.append(
                f"{key(path + '.backup.target')}: {vm.backup.target!r} overlaps the VMs' "
                f"{mine.rstrip('/')}; use a directory of its own, such as "
                f"{storage.rstrip('/')}/backups"
            )
            return


def _check_restores(vms: list, problems: list) -> None:
    """A VM restored from a snapshot (template.snapshot) needs that snapshot first: never
    of itself, directly or through other restored VMs."""
    source = {vm.name: (vm.template.snapshot or "@").split("@", 1)[0] for vm in vms}
    for i, vm in enumerate(vms):
        seen, at = [vm.name], source[vm.name]
        while at in source and at not in seen:
            seen.append(at)
            at = source[at]
        if at in seen:
            chain = " -> ".join(seen + [at])
            problems.append(
                f"{key(f'vms[{i}].template.snapshot')}: {vm.template.snapshot!r} makes a VM "
                f"from its own snapshot ({chain}); name a snapshot of another VM"
            )


def _check_nics(vm: Vm, path: str, bridges: tuple, problems: list, on_node: bool) -> None:
    """A NIC sits on a bridge this stack makes on the VM's node (or on its libvirt
    network): a bridge that does not exist fails only when the VM starts, after `up` has
    changed other things. on_node: the VM's node is known (else that is its problem)."""
    for j, nic in enumerate(vm.nics):
        where = key(f"{path}.nics[{j}]")
        found = [b for b in bridges if b.name == nic.bridge or b.network == nic.network]
        if not found:
            known = ", ".join(b.name for b in bridges) or "none"
            problems.append(
                f"{where}: {nic.bridge or nic.network!r} is not a bridge of "
                f"{key('bridges')} (bridges: {known}); define it there"
            )
        elif on_node and vm.node not in found[0].nodes:
            problems.append(
                f"{where}: bridge {found[0].name} is not made on {vm.node} "
                f"(its nodes: {', '.join(found[0].nodes)})"
            )
