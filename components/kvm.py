"""Kvm: the stack's bridges (per node) and VMs, from StackConfig and the PreparedNodes.

A bridge change can blip a node's network, so the nodes of one bridge are converged one at
a time: each node's KvmBridge depends on the previous node's, and a KvmBridge finishes only
after the node's sshd answered a new connection (else it rolled itself back and the chain
stops).
The bridges are made before the Ceph half (`network()`: a node's Ceph daemons come after
the bridge that takes over their address, so a destroy takes them down before it), the VMs
after it (`place_vms`). A VM comes after its node's bridges, prep and migration access, and
the storage its disks live on (the CephFS mounts). A VM's snapshots (VmSnapshot) come after
it; a VM restored from one, after that snapshot.
"""

from __future__ import annotations

from typing import Optional

import pulumi

from components import maintenance
from components.config import StackConfig
from providers.backup_schedule import BackupSchedule
from providers.cloud_vm import CloudVM
from providers.cockpit import Cockpit
from providers.kvm_bridge import KvmBridge
from providers.login_password import LoginPassword
from providers.schema.kvm import Bridge, Vm
from providers.migration_access import KEY_PATH, MigrationAccess, peer
from providers.migration_key import MigrationKey
from providers.vm_backup import VmBackup
from providers.vm_snapshot import VmSnapshot


class Kvm(pulumi.ComponentResource):
    def __init__(
        self, stack: StackConfig, nodes: dict, opts: Optional[pulumi.ResourceOptions] = None
    ):
        """The nodes' side: bridges, migration access, Cockpit. place_vms adds the VMs."""
        super().__init__("cephkvm:index:Kvm", "kvm", None, opts)
        self.bridges: dict = {}  # node -> bridge name -> KvmBridge
        self.vms: dict = {}
        self.snapshots: dict = {}  # "VM@NAME" -> VmSnapshot
        self.backups: dict = {}  # VM -> VmBackup
        self.schedules: dict = {}  # node -> BackupSchedule (when a VM's backups have `every`)
        self.gate = None
        for bridge in stack.kvm.bridges:
            self._bridge_chain(bridge, nodes)
        self.kvm_nodes = [n for n in stack.nodes if "kvm" in n.roles]
        many = len(self.kvm_nodes) > 1
        self.migration = self._migration_access(self.kvm_nodes, nodes) if many else {}
        self.cockpit_password = None
        self.cockpit = self._cockpit(stack.cockpit, self.kvm_nodes, nodes) if stack.cockpit else {}

    def network(self) -> dict:
        """node -> its bridges: what its services' addresses may sit on."""
        return {node: list(per_node.values()) for node, per_node in self.bridges.items()}

    def place_vms(
        self, stack: StackConfig, nodes: dict, storage: Optional[dict] = None, gate=None
    ) -> None:
        """storage: per node, the resources its VM disks' directory needs (CephFS mounts);
        gate: the Maintenance resource (components/maintenance.py), when a node is in
        maintenance: every VM waits for it (one may move)."""
        cfg, kvm_nodes = stack.kvm, self.kvm_nodes
        if gate is None:
            gate = maintenance.gate(stack, nodes, [], [n.prep for n in nodes.values()])
        placement = stack.maintenance.placement
        for vm in _sources_first(cfg.vms):
            # Where it runs: its node, or another while its node is in maintenance.
            vm = vm.model_copy(update={"node": placement.get(vm.name, vm.node)})
            source = self.snapshots.get(vm.template.snapshot or "")
            # What the VM needs is on its own node (a migration's target): depending on every
            # node's resources made the state grow with VMs times nodes.
            own = [
                nodes[vm.node].prep,
                *self.bridges.get(vm.node, {}).values(),
                *([self.migration[vm.node]] if vm.node in self.migration else []),
                *(storage or {}).get(vm.node, []),
                *([gate] if gate else []),
                *([source] if source else []),
            ]
            self.vms[vm.name] = self._vm(vm, cfg, nodes, [n.name for n in kvm_nodes], own)
            for name in vm.snapshots:
                self.snapshots[f"{vm.name}@{name}"] = self._snapshot(vm, name, cfg, nodes)
            if vm.backup:
                self.backups[vm.name] = self._backup(vm, cfg, nodes)
        if any(vm.backup and vm.backup.every for vm in cfg.vms):
            self.schedules = self._schedules(kvm_nodes, cfg, nodes, storage)
        self.gate = gate
        self.register_outputs({})

    def resources(self) -> list:
        """Every resource it made (the DestroyGuard depends on each by name)."""
        return (
            [b for per_node in self.bridges.values() for b in per_node.values()]
            + list(self.migration.values())
            + list(self.cockpit.values())
            + ([self.cockpit_password] if self.cockpit_password else [])
            + list(self.vms.values())
            + list(self.snapshots.values())
            + list(self.backups.values())
            + list(self.schedules.values())
            + ([self.gate] if self.gate else [])
        )

    def _bridge_chain(self, bridge: Bridge, nodes: dict) -> None:
        previous = None
        for name in bridge.nodes:
            prepared = nodes[name]
            after = [prepared.prep] + ([previous] if previous else [])
            previous = KvmBridge(
                f"{name}-{bridge.name}",
                {
                    "node": name,
                    **prepared.access,
                    "name": bridge.name,
                    "interfaces": list(bridge.interfaces),
                    "addresses": list(bridge.addresses.get(name, ())),
                    "gateway": bridge.gateway,
                    "nameservers": list(bridge.nameservers),
                    "search": list(bridge.search),
                    "mode": bridge.mode,
                    "network": bridge.network,
                    "confirm_timeout": bridge.confirm_timeout,
                    **({"vlan": bridge.vlan} if bridge.vlan else {}),
                    **({"bond": bridge.bond.model_dump(exclude_none=True)} if bridge.bond else {}),
                },
                pulumi.ResourceOptions(parent=self, depends_on=after),
            )
            self.bridges.setdefault(name, {})[bridge.name] = previous

    def _cockpit(self, cockpit, kvm_nodes: list, nodes: dict) -> dict:
        """Cockpit on every KVM node, one generated password for its account on all."""
        self.cockpit_password = LoginPassword(
            "cockpit-password",
            {"purpose": f"cockpit@{pulumi.get_project()}-{pulumi.get_stack()}"},
            pulumi.ResourceOptions(parent=self),
        )
        return {
            n.name: Cockpit(
                f"{n.name}-cockpit",
                {
                    "node": n.name,
                    **nodes[n.name].access,
                    "address": n.address,
                    "port": cockpit.port,
                    "user": cockpit.user,
                    "password": self.cockpit_password.password,
                },
                pulumi.ResourceOptions(parent=self, depends_on=[nodes[n.name].prep]),
            )
            for n in kvm_nodes
        }

    def cockpit_outputs(self, stack: StackConfig) -> dict:
        """The console's account and each KVM node's URL; the password apart (__main__)."""
        return {
            "user": stack.cockpit.user,
            "urls": {name: c.url for name, c in self.cockpit.items()},
        }

    def _migration_access(self, kvm_nodes: list, nodes: dict) -> dict:
        key = MigrationKey(
            "migration-key",
            {
                "comment": f"cephkvm-migration@{pulumi.get_project()}-{pulumi.get_stack()}",
            },
            pulumi.ResourceOptions(parent=self),
        )
        peers = [n.address for n in kvm_nodes]
        peer_nodes = [peer(nodes[n.name].connection) for n in kvm_nodes]
        return {
            n.name: MigrationAccess(
                f"{n.name}-migration",
                {
                    "node": n.name,
                    **nodes[n.name].access,
                    "peers": peers,
                    "peer_nodes": peer_nodes,
                    "public_key": key.public_key,
                    "private_key": key.private_key,
                },
                pulumi.ResourceOptions(parent=self, depends_on=[nodes[n.name].prep]),
            )
            for n in kvm_nodes
        }

    def _vm(self, vm: Vm, cfg, nodes: dict, kvm_nodes: list, after: list) -> CloudVM:
        """CloudVM's inputs (providers/schema/kvm.py VmInputs): the VM as configured, plus
        what only the stack knows."""
        prepared = nodes[vm.node]
        props = {
            **vm.model_dump(mode="json", exclude_none=True, exclude={"snapshots", "backup"}),
            "owner": f"{pulumi.get_project()}/{pulumi.get_stack()}",
            **prepared.access,
            "virt_type": (
                prepared.node.virt_type_effective if vm.virt_type == "auto" else vm.virt_type
            ),
            "max_memory_mib": vm.max_memory_mib or vm.memory_mib,
            "max_vcpus": vm.max_vcpus or vm.vcpus,
            **({"migration_key": KEY_PATH} if len(kvm_nodes) > 1 else {}),
            "storage": cfg.storage,
            "shared_storage": cfg.storage_shared,
        }
        if cfg.passwords.get(vm.name):
            props["password"] = pulumi.Output.secret(cfg.passwords[vm.name])
        return CloudVM(vm.name, props, pulumi.ResourceOptions(parent=self, depends_on=after))

    def _snapshot(self, vm: Vm, name: str, cfg, nodes: dict) -> VmSnapshot:
        """Quiesced on the node the VM runs on; plain values only, so that a change of the
        VM (a replace) does not take its snapshots with it."""
        return VmSnapshot(
            f"{vm.name}@{name}",
            {
                "vm": vm.name,
                "name": name,
                "node": vm.node,
                "storage": cfg.storage,
                "owner": f"{pulumi.get_project()}/{pulumi.get_stack()}",
                **nodes[vm.node].access,
            },
            pulumi.ResourceOptions(parent=self, depends_on=[self.vms[vm.name]]),
        )

    def _backup(self, vm: Vm, cfg, nodes: dict) -> VmBackup:
        """Taken on the node the VM runs on; plain values, like _snapshot."""
        return VmBackup(
            f"{vm.name}-backup",
            {
                "vm": vm.name,
                "storage": cfg.storage,
                **vm.backup.model_dump(exclude_none=True, exclude={"every"}),
                **({"every": seconds(vm.backup.every)} if vm.backup.every else {}),
                "node": vm.node,
                "owner": f"{pulumi.get_project()}/{pulumi.get_stack()}",
                **nodes[vm.node].access,
            },
            pulumi.ResourceOptions(parent=self, depends_on=[self.vms[vm.name]]),
        )

    def _schedules(self, kvm_nodes: list, cfg, nodes: dict, storage) -> dict:
        """Every KVM node: a VM is backed up by whichever node runs it."""
        return {
            n.name: BackupSchedule(
                f"{n.name}-backup-schedule",
                {"node": n.name, **nodes[n.name].access, "storage": cfg.storage},
                pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[nodes[n.name].prep, *(storage or {}).get(n.name, [])],
                ),
            )
            for n in kvm_nodes
        }

    def bridge_outputs(self) -> dict:
        return {
            node: {
                name: pulumi.Output.all(
                    mode=b.applied_mode,
                    mac=b.mac,
                    effective=b.effective,
                    network_active=b.network_active,
                )
                for name, b in per_node.items()
            }
            for node, per_node in self.bridges.items()
        }

    def vm_outputs(self, stack: StackConfig) -> dict:
        """host: where it runs; home: its configured node (they differ in maintenance)."""
        homes = {vm.name: vm.node for vm in stack.kvm.vms}
        return {
            name: pulumi.Output.all(
                host=vm.host,
                home=homes[name],
                addresses=vm.addresses,
                macs=vm.macs,
                uuid=vm.uuid,
                state=vm.state,
                disk_path=vm.disk_path,
                instance_id=vm.instance_id,
                ready=vm.ready,
                cloud_init_errors=vm.cloud_init_errors,
                last_migration=vm.last_migration,
                snapshots=self._snapshot_outputs(name),
                backups=self.backups[name].backups if name in self.backups else [],
                last_backup=self.backups[name].last if name in self.backups else None,
                scheduled_backup=self.backups[name].scheduled if name in self.backups else None,
            )
            for name, vm in self.vms.items()
        }

    def _snapshot_outputs(self, vm: str) -> dict:
        return {
            ref.split("@", 1)[1]: pulumi.Output.all(consistency=s.consistency, taken=s.taken)
            for ref, s in self.snapshots.items()
            if ref.split("@", 1)[0] == vm
        }


UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(every: str) -> int:
    """A backup policy's `every` (such as 6h) in seconds."""
    return int(every[:-1]) * UNITS[every[-1]]


def _sources_first(vms: tuple) -> list:
    """The VMs, each restored one after the VM its snapshot is of (config_kvm refuses
    cycles)."""
    by_name, done, out = {v.name: v for v in vms}, set(), []

    def visit(vm):
        if vm.name not in done:
            done.add(vm.name)
            source = (vm.template.snapshot or "@").split("@", 1)[0]
            if source in by_name:
                visit(by_name[source])
            out.append(vm)

    for vm in vms:
        visit(vm)
    return out
