"""A node of the stack (`cephkvm:nodes[]`), how cephkvm reaches it (`cephkvm:ssh`), and the
node-wide KVM setting (`cephkvm:kvm`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from providers.schema.types import (
    IP,
    Address,
    Bool,
    Cidr,
    DevicePath,
    NodeName,
    Section,
    Spec,
    hint,
    replace,
    state,
    text,
    update,
    whole,
)

ROLES = ("mon", "mgr", "mds", "osd", "kvm")
Role = Literal["mon", "mgr", "mds", "osd", "kvm"]
VirtType = Literal["auto", "kvm", "qemu"]
HostKey = text(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+",
    "must look like 'ssh-ed25519 AAAA...' (a line of `ssh-keyscan`, without the host name)",
)
User = text(
    r"[a-z_][a-z0-9_-]{0,31}",
    "must be a user name on the node (root, or a service account with passwordless sudo)",
)
Path = text(r"[^\x00-\x1f]+", "must be a file path")


class Node(Section):
    name: NodeName = hint(fix="node names are used in resource names and host names")
    address: Address = hint(fix="where cephkvm reaches the node over SSH")
    ceph_address: IP | None = hint(None, fix="the node's IP address on Ceph's public network")
    port: whole(1, 65535) = hint(22, fix="a TCP port")
    user: User = hint("root", fix="root, or a service account with passwordless sudo")
    key_file: Path | None = hint(None, fix="this node's SSH key, else cephkvm:ssh.key_file")
    host_key: HostKey | None = hint(
        None,
        fix="pin it, or set cephkvm:ssh.trust_on_first_use: true to record it on first contact",
    )
    roles: tuple[Role, ...] = hint(ROLES, fix="roles are " + ", ".join(ROLES))
    disks: tuple[DevicePath, ...] = hint(
        (), fix="one OSD per device (with the osd role); use /dev/disk/by-id/ paths"
    )
    maintenance: Bool = hint(
        False,
        fix="true: its VMs move away and its Ceph daemons stop "
        "(components/config_maintenance.py); false brings it back",
    )

    @property
    def public_address(self) -> str:
        """Where its mon listens and its daemons talk to the cluster."""
        return self.ceph_address or self.address

    def connection(self, ssh: "Ssh") -> dict:
        """The `connection` input every per-node provider takes."""
        conn = {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "key_file": self.key_file or ssh.key_file,
            "host_key": self.host_key,
            "known_hosts": ssh.known_hosts,
            "trust_on_first_use": ssh.trust_on_first_use,
        }
        return {k: v for k, v in conn.items() if v is not None}


class Ssh(Section):
    key_file: Path | None = hint(
        None, fix="the SSH private key (else cephkvm:ssh_private_key, a secret)"
    )
    known_hosts: Path = hint(
        "~/.config/cephkvm/known_hosts", fix="host keys learnt on first contact (written 0600)"
    )
    trust_on_first_use: Bool = hint(
        False,
        fix="record an unpinned host key on first contact; "
        "later runs trust the key in the stack's state",
    )


class Inventory(Section):
    """`cephkvm:inventory`: a JSON or YAML file listing the nodes, made by another tool
    (the lab writes one)."""

    nodes: tuple[Node, ...] = hint(fix="list at least one node", min_length=1)
    ssh: Ssh | None = None
    public_network: Cidr | None = hint(None, fix="the default of cephkvm:ceph.public_network")
    # `{inventory:NAME}` in any string of the stack config is vars[NAME]
    vars: dict[str, str] = {}


class Cockpit(Section):
    """`cephkvm:kvm.cockpit`: Cockpit's web console with its Virtual machines page on every
    KVM node, for one account cephkvm makes (its password: the secret output
    `cockpit_password`)."""

    port: whole(1024, 65535) = hint(9090, fix="the HTTPS port on each KVM node's address")
    user: User = hint("cockpit-admin", fix="the account cephkvm makes for the console")


class Kvm(Section):
    virt_type: VirtType = hint("auto", fix="use qemu where KVM acceleration fails")
    cockpit: Cockpit | None = hint(None, fix="true (or {port, user}) turns Cockpit on")

    @field_validator("cockpit", mode="before")
    @classmethod
    def _cockpit_switch(cls, value):
        """`cockpit: true` is Cockpit with its defaults, `false` none."""
        return {} if value is True else None if value is False else value


# --- the node resources' inputs ------------------------------------------------------------
Package = text(r"[a-z0-9][a-z0-9+.-]+", "is not a Debian package name")
Connection = dict[str, Any]  # providers/base.py CONNECTION_FIELDS


class NodeInputs(Spec):
    """Node: the facts of one server (hostname, init, KVM, the virt type to use)."""

    node: str = replace()
    connection: Connection = update()
    virt_type: VirtType = update("auto")


class PasswordInputs(Spec):
    """LoginPassword: a password made once and kept only in the (encrypted) state."""

    purpose: text(r"[^\s\x00-\x1f]+", "must be one word") = replace()


class CockpitInputs(Spec):
    """Cockpit: the console on one KVM node, and its login account."""

    node: str = replace()
    connection: Connection = update()
    address: Address = update(fix="the node's address cockpit-ws listens on")
    port: whole(1024, 65535) = update(9090)
    user: User = update("cockpit-admin")
    password: str = update(fix="LoginPassword's output")  # secret
    # read reports "down" when the account, its password or the service is not as set
    ensure: Literal["up"] = update("up")
    timeout: whole(0) = state(60)


class NodePrepInputs(Spec):
    """NodePrep: the packages, daemons and groups one node needs."""

    node: str = replace()
    connection: Connection = update()
    packages: tuple[Package, ...] | None = update(None)  # installed when missing
    daemons: tuple[Literal["virtlogd", "libvirtd"], ...] | None = update(None)  # in order
    # groups the SSH user joins when it is not root (libvirt: virsh without sudo)
    groups: tuple[str, ...] | None = update(None)


class MaintenanceInputs(Spec):
    """Maintenance: what must hold before the nodes in maintenance stop (one per stack,
    while any node is in maintenance; providers/maintenance.py)."""

    cluster_name: str = update("ceph")
    admin: tuple[Connection, ...] = state(())  # admin nodes of the cluster (none: no Ceph)
    # {name, mon, mgr, mds, osd: bools}: each node in maintenance and its Ceph roles
    nodes: tuple[dict[str, Any], ...] = update(fix="the nodes in maintenance", min_length=1)
    # {vm, memory_mib, to}: the VMs that leave those nodes, and where they go
    moves: tuple[dict[str, Any], ...] = update(())
    # {connection, ssh_private_key?}: the nodes the VMs move to
    targets: tuple[dict[str, Any], ...] = update(())
