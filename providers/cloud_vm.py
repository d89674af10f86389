"""CloudVM: a VM made from a cloud image, on one node, with its disks on shared storage.

What it owns, under `storage` (CephFS in production): the template imported once into
`templates/` (shared by every VM made from it, never deleted by a VM), a qcow2 overlay
`virtualmachines/NAME.qcow2` backed by it (or a copy of another VM's overlay in one of its
snapshots, providers/vm_snapshot.py), the NoCloud seed `config/NAME-seed.iso`, and the
libvirt domain on its node, reached with libvirt-python over SSH (providers/libvirt_conn.py).

Changes: a new node is a live migration (the domain ends up defined and running only there);
memory and vCPUs change live up to the domain's maximum, otherwise by graceful shutdown,
redefine and start (or fail, by `on_restart_needed: fail`); the disk grows live; a cloud-init
change writes a new seed with a new instance-id, which the guest applies on its next boot
(or replaces the VM, by `on_cloud_init_change: replace`); NICs are added and removed live.

This module is the resource's story (schema, check, diff, create, read, update, delete); the
steps live beside it: vm_storage (template, overlay, seed), vm_ready (when the guest is
usable), vm_migrate (to another node), vm_change (in place), libvirt_conn (live domains).
"""

from __future__ import annotations

import json
from typing import Optional

import pulumi
from pulumi.dynamic import CheckFailure, CreateResult, ReadResult, UpdateResult

from providers import base, libvirt_conn, vm_change, vm_migrate, vm_ready, vm_storage
from providers import libvirt_domain as dx
from providers.errors import Failure
from providers.migration_access import PEER_FIELDS, PEERS_PATH
from providers.schema.kvm import VmInputs
from providers.transport import Session

# --- input schema -----------------------------------------------------------------------
# providers/schema/kvm.py, VmInputs: each field's type, default, bounds and change class.
# Besides: ssh_private_key (secret; otherwise connection.key_file).
# outputs: uuid, host, state, macs, addresses, disk_path, seed_path, template_path,
#          instance_id, seed_generation, ready, cloud_init_errors, last_migration (what
#          the latest live move cost: downtime_ms, total_ms, data_mib)
INPUTS = VmInputs
# The owner tag is written when the domain is defined; a renamed project or stack finds no
# domain of its own and refuses the one of that name (see libvirt_conn.own).
REPLACES, UPDATES, STATE = base.tables(INPUTS)
CLOUD_INIT_FIELDS = ("cloud_init", "password")
# Fields that only a shutdown + redefine can change.
RESTART_FIELDS = ("max_memory_mib", "max_vcpus", "virt_type")


class CloudVMProvider(base.Provider):
    INPUTS = INPUTS

    def fill(self, news):
        news.setdefault("max_memory_mib", news["memory_mib"])
        news.setdefault("max_vcpus", news["vcpus"])
        return news

    def rules(self, news, olds):
        target = news.get("rollback_to")
        if target and target != olds.get("rollback_to") and news.get("allow_rollback") is not True:
            return [
                CheckFailure(
                    "rollback_to",
                    f"rolling back to {target} replaces the VM's running disk (the current one "
                    "is kept beside it); set allow_rollback: true to do it",
                )
            ]
        old, new = olds.get("disk_gib"), news.get("disk_gib")
        if isinstance(old, int) and isinstance(new, int) and new < old:
            return [
                CheckFailure(
                    "disk_gib",
                    f"disks only grow: it is {old} GiB; shrinking "
                    "would lose data (make a new VM instead)",
                )
            ]
        return []

    def diff(self, _id, olds, news):
        replaces = REPLACES + (
            CLOUD_INIT_FIELDS if news.get("on_cloud_init_change") == "replace" else ()
        )
        # Two domains of one name cannot coexist on a node: the old one goes first.
        return base.diff_result(
            olds, news, replaces=replaces, updates=UPDATES, state=STATE, delete_before_replace=True
        )

    def create(self, props):
        node = self.node
        vm_storage.make_dirs(node, props["storage"])
        if props["template"].get("snapshot"):  # a restore: a copy of that VM's overlay
            paths = vm_storage.restore_disk(node, props)
        elif props["template"].get("backup"):  # a restore: the backup read through
            paths = vm_storage.restore_backup(node, props)
        else:
            template = vm_storage.import_template(node, props)
            paths = vm_storage.paths({**props, "template_path": template})
            vm_storage.make_overlay(node, paths, props["disk_gib"])
        seed = vm_storage.write_seed(node, props, paths["seed"], generation=1)
        with libvirt_conn.connect(node) as conn:
            dom = libvirt_conn.own(conn, props, refuse=True)
            if dom is None:
                dom = conn.defineXML(dx.vm_xml(props, paths))
            if not dom.isActive():
                dom.create()
            dom.setAutostart(1 if props["autostart"] else 0)
            outs = {**vm_ready.wait(dom, props, seed["instance_id"]), **_observe(dom, props)}
        return CreateResult(props["name"], {**props, **vm_storage.paths_out(paths), **seed, **outs})

    def read(self, id_, props):
        for where, node in _candidates(props, self.node):
            with libvirt_conn.connect(node) as conn:
                dom = libvirt_conn.own(conn, where)
                if dom is None:
                    continue
                found = dx.parse_domain(libvirt_conn.persistent_xml(dom))
                outs = {**vm_ready.now(dom, props), **_observe(dom, where)}
            # Drift shows as differences from the inputs: a hand migration as a node change.
            return ReadResult(
                id_,
                {
                    **props,
                    **outs,
                    "connection": where["connection"],
                    "node": where["node"],
                    **{
                        k: found[k]
                        for k in ("memory_mib", "max_memory_mib", "vcpus", "max_vcpus", "virt_type")
                    },
                },
            )
        return ReadResult("", {})

    def update(self, _id, olds, news):
        changed = self.changed(olds, news)
        restart = bool(changed & set(RESTART_FIELDS))
        if restart and news["on_restart_needed"] == "fail":
            raise Failure(
                f"{news['name']}: changing {', '.join(sorted(changed & set(RESTART_FIELDS)))} "
                "needs the VM restarted, and on_restart_needed is 'fail'. Set it to 'restart' "
                "or raise max_memory_mib/max_vcpus ahead of time."
            )
        node = self.node
        moved = olds.get("last_migration")
        if olds["node"] != news["node"]:
            moved = vm_migrate.migrate(olds, news, node) or moved
        paths = vm_storage.paths({**news, "template_path": olds.get("template_path")})
        seed = {k: olds.get(k) for k in ("instance_id", "seed_generation")}
        new_seed = bool(changed & set(CLOUD_INIT_FIELDS))
        if new_seed:
            seed = vm_storage.write_seed(
                node, news, paths["seed"], generation=int(olds.get("seed_generation") or 1) + 1
            )
        with libvirt_conn.connect(node) as conn:
            dom = libvirt_conn.own(conn, news, refuse=True)  # never a domain not ours
            if dom is None:
                raise Failure(
                    f"{news['name']}: not defined on {news['node']}; run "
                    "`pulumi refresh` to see where it is"
                )
            if "disk_gib" in changed:
                vm_change.grow_disk(node, dom, paths["disk"], news["disk_gib"])
            if "nics" in changed:
                vm_change.update_nics(dom, olds, news)
            if new_seed:
                vm_change.swap_seed_media(dom, paths["seed"])
            # A guest that keeps running stays as ready as it was; a restarted one is waited for.
            ready = {k: olds.get(k) for k in ("ready", "cloud_init_errors")}
            if "rollback_to" in changed and news.get("rollback_to"):
                vm_change.roll_back(node, dom, news, paths)
                ready = vm_ready.wait(dom, news, seed["instance_id"])
            elif restart:
                vm_change.redefine_and_restart(conn, dom, news, paths)
                dom = libvirt_conn.domain(conn, news["name"])
                ready = vm_ready.wait(dom, news, seed["instance_id"])
            else:
                vm_change.resize_live(dom, olds, news)
            dom.setAutostart(1 if news["autostart"] else 0)
            outs = {**ready, **_observe(dom, news)}
        outs["last_migration"] = moved
        return UpdateResult({**news, **vm_storage.paths_out(paths), **seed, **outs})

    def delete(self, _id, props):
        node = self.node
        found = False
        for where, there in _candidates(props, node):  # it may have been migrated by hand
            with libvirt_conn.connect(there) as conn:
                dom = libvirt_conn.own(conn, where)
                if dom is not None:
                    libvirt_conn.shutdown(dom, props["shutdown_timeout"])
                    dom.undefine()
                    found = True
                    break
        paths = vm_storage.paths(props)
        if props.get("keep_disk"):
            return
        if not found:  # running somewhere we cannot see, or not ours: its disk may be in use
            pulumi.log.warn(
                f"{props['name']}: no domain of this stack on any KVM node, so its "
                f"disk {paths['disk']} is kept; remove it by hand once unused"
            )
            return
        node.run(["rm", "-f", "--", paths["disk"], paths["seed"]], change=True)


# --- what the provider reads -----------------------------------------------------------


def _candidates(props: dict, node: Session):
    """(props, its session) as seen from its own node first, then from each peer node."""
    yield props, node
    for peer in _peers(props, node):
        where = {**props, "connection": peer, "node": peer["name"]}
        yield where, base.session(where)


def _peers(props: dict, node: Session) -> list:
    """The other KVM nodes' connections, as the node's MigrationAccess keeps them (the same
    SSH key and known_hosts as its own; each peer's host key pinned)."""
    text = node.get(PEERS_PATH)
    own = {k: v for k, v in props["connection"].items() if k not in PEER_FIELDS}
    return [
        {**own, **{k: p[k] for k in PEER_FIELDS if p.get(k) is not None}}
        for p in (json.loads(text) if text else [])
        if p.get("name") != props["connection"].get("name")
    ]


def _observe(dom, p: dict) -> dict:
    macs = dx.nic_macs(p["name"], p["nics"])
    state, _ = dom.state()
    return {
        "uuid": dom.UUIDString(),
        "host": p["node"],
        "state": dx.state_name(state),
        "macs": macs,
        "addresses": vm_ready.addresses(dom, macs),
    }


class CloudVM(pulumi.dynamic.Resource, module="cephkvm", name="CloudVM"):
    uuid: pulumi.Output[str]
    host: pulumi.Output[str]
    state: pulumi.Output[str]
    macs: pulumi.Output[list]
    addresses: pulumi.Output[list]
    disk_path: pulumi.Output[str]
    seed_path: pulumi.Output[str]
    template_path: pulumi.Output[str]
    instance_id: pulumi.Output[str]
    ready: pulumi.Output[bool]
    cloud_init_errors: pulumi.Output[list]
    last_migration: pulumi.Output[dict]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        outputs = {
            k: None
            for k in (
                "uuid",
                "host",
                "state",
                "macs",
                "addresses",
                "disk_path",
                "seed_path",
                "template_path",
                "instance_id",
                "seed_generation",
                "ready",
                "cloud_init_errors",
                "last_migration",
            )
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["password", "ssh_private_key"])
        )
        super().__init__(CloudVMProvider(), name, {**outputs, **props}, opts)
