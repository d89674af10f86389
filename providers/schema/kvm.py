"""The KVM part of the stack config: `cephkvm:bridges[]` and `cephkvm:vms[]`. A VM's fields
are CloudVM's inputs too (`VmInputs` adds what the component derives), so each field's type,
default, bounds and change class are written here only. NICs on bridges the stack makes and
nodes that exist are components/config_kvm.py's rules."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator
from typing_extensions import Annotated

from providers.schema.types import (
    IP,
    Bool,
    IfName,
    Interface,
    NodeName,
    Section,
    Spec,
    fail,
    hint,
    replace,
    state,
    text,
    update,
    whole,
)

BOND_MODES = Literal[
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
]
VmName = text(
    r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", "must be letters, digits, '.', '_' or '-' (at most 63)"
)
SnapshotName = text(
    r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", "must be letters, digits, '.', '_' or '-' (at most 63)"
)
BackupFile = text(r"/[^\x00-\x1f]*\.qcow2", "must be a backup's absolute path (a .qcow2 file)")
SnapshotRef = text(
    r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}@[A-Za-z0-9][A-Za-z0-9_.-]{0,62}",
    "must name a VM's snapshot as VM@SNAPSHOT, such as web1@before-upgrade",
)
DNS_NAME = r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}"
HostName = text(DNS_NAME, "must be a host name (letters, digits, '.', '-')")
Domain = text(DNS_NAME, "must be a DNS domain such as intranet.example.com")
Mac = text(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", "must look like 52:54:00:12:34:56")
Sha256 = text(r"[0-9a-fA-F]{64}", "must be the image's 64 hex digit SHA-256 (`sha256sum IMAGE`)")
AbsPath = text(r"/[^\x00-\x1f]*", "must be an absolute directory (CephFS, e.g. /mnt/cephfs)")
AuthorizedKey = text(
    r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|"
    r"sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) "
    r"[A-Za-z0-9+/=]+( [^\x00-\x1f]*)?",
    "must be one public key line, such as 'ssh-ed25519 AAAA... you@host'",
)


class Bond(Section):
    name: IfName
    mode: BOND_MODES | None = None  # the provider's default: active-backup


class Bridge(Section):
    name: IfName
    interfaces: tuple[IfName, ...] = hint(
        fix="list the NICs the bridge goes over, such as [ens33]", min_length=1
    )
    nodes: tuple[str, ...] | None = hint(None, fix="default: every node with the kvm role")
    addresses: dict[str, tuple[Interface, ...]] = hint(
        {}, fix="map each node to its addresses, such as {osd1: [10.20.10.31/24]}"
    )
    gateway: IP | None = None
    nameservers: tuple[IP, ...] = ()
    search: tuple[Domain, ...] = ()
    mode: Literal["auto", "netplan", "iproute2"] = hint(
        "auto", fix="auto is netplan where it exists, else iproute2"
    )
    network: str | None = hint(None, fix="its libvirt network (default: the bridge's name)")
    confirm_timeout: whole(5, 600, " seconds") = hint(
        30, fix="rolled back unless SSH answers again in time"
    )
    vlan: whole(1, 4094) | None = hint(None, fix="a VLAN ID")
    bond: Bond | None = hint(
        None, fix="give the bond a name, such as {name: bond0, mode: active-backup}"
    )


class Template(Section):
    """What the VM's disk starts from: a cloud image, or another VM's snapshot (a restore)."""

    source: text(r".+", "is empty") | None = hint(
        None, fix="the cloud image's path on the node, or an https URL"
    )
    sha256: Sha256 | None = Field(None, validate_default=True)
    snapshot: SnapshotRef | None = hint(
        None,
        fix="a snapshot to start from, as VM@SNAPSHOT (instead of source)",
        validate_default=True,
    )
    backup: BackupFile | None = hint(
        None,
        fix="a backup file to start from, as the VM's backups output lists it (instead of source)",
        validate_default=True,
    )

    @field_validator("sha256")
    @classmethod
    def _http_needs_a_checksum(cls, value, info: ValidationInfo):
        if not value and str(info.data.get("source", "")).startswith("http://"):
            fail("an http:// image can be changed on the way: give its sha256, or an https:// URL")
        return value

    @field_validator("backup")
    @classmethod
    def _one_origin(cls, value, info: ValidationInfo):
        given = [bool(value), bool(info.data.get("source")), bool(info.data.get("snapshot"))]
        if given.count(True) != 1:
            fail(
                "give exactly one of source (a cloud image), snapshot (VM@SNAPSHOT) or "
                "backup (a backup file)"
            )
        return value


class Backup(Section):
    target: AbsPath = hint(
        fix="the directory backups go to, on the KVM nodes (such as /mnt/cephfs/backups)"
    )
    keep: whole(1, 1000) = hint(7, fix="how many backups are kept")
    full_every: whole(1, 1000) = hint(
        7, fix="a full backup after this many backups (the others hold only what changed)"
    )
    now: str | None = hint(None, fix="a new value takes a backup at the next up (a date)")
    every: text(r"[1-9][0-9]{0,5}[mhdw]", "must be a count and a unit (m, h, d, w)") | None = hint(
        None,
        fix="also take one this often on the node the VM runs on, without pulumi: such as "
        "1d or 6h (checked every minute; a count and m, h, d or w)",
    )


class Nic(Section):
    bridge: IfName | None = None
    network: str | None = Field(None, validate_default=True)
    mac: Mac | None = None
    model: Literal["virtio", "e1000", "rtl8139"] | None = None

    @field_validator("network")
    @classmethod
    def _one_source(cls, value, info: ValidationInfo):
        if bool(value) == bool(info.data.get("bridge")):
            fail("name exactly one of bridge or network, such as {bridge: br0}")
        return value


class CloudInit(Section):
    unknown_hint: ClassVar[str] = " (anything else goes in user_data)"
    hostname: HostName | None = None
    users: tuple[Any, ...] | None = None
    ssh_authorized_keys: tuple[AuthorizedKey, ...] | None = None
    packages: tuple[str, ...] | None = None
    runcmd: tuple[Any, ...] | None = None
    user_data: dict[str, Any] | None = None  # merged into #cloud-config
    network_config: dict[str, Any] | None = None  # netplan v2


def _template(value):
    return {"source": value} if isinstance(value, str) else value


class Vm(Spec):
    renamed: ClassVar[dict] = {
        "ip_timeout": "renamed to ready_timeout (up now waits until cloud-init has finished, "
        "see wait_for)",
        "password": "a password goes in cephkvm:vm_passwords, as a secret",
    }
    name: VmName = replace()
    node: str = update(fix="a node of cephkvm:nodes; a change is a live migration")
    template: Annotated[Template, BeforeValidator(_template)] = replace(
        fix="give the cloud image's path on the node, or {source: PATH, sha256: HEX}"
    )
    memory_mib: whole(64, 4 << 20) = update(512)
    max_memory_mib: whole(64, 4 << 20) | None = update(None, fix="live changes go up to it")
    vcpus: whole(1, 512) = update(1)
    max_vcpus: whole(1, 512) | None = update(None, fix="live changes go up to it")
    disk_gib: whole(1, 1 << 16) = update(10, fix="disks only grow")
    virt_type: Literal["auto", "kvm", "qemu"] = update(
        "auto", fix="auto: the node's own (kvm where /dev/kvm works)"
    )
    nics: tuple[Nic, ...] = update((), fix="a list such as [{bridge: br0}]")
    cloud_init: CloudInit = update(CloudInit())
    autostart: Bool = update(True)
    # Settings for the next change or delete: a new value changes nothing on the node.
    on_restart_needed: Literal["restart", "fail"] = state(
        "restart", fix="what a change that needs a reboot does"
    )
    on_cloud_init_change: Literal["next-boot", "replace"] = state(
        "next-boot", fix="a new seed applied on the next boot, or a new VM"
    )
    keep_disk: Bool = state(True, fix="false lets delete remove the overlay and seed")
    shutdown_timeout: whole(0, 3600, " seconds") = state(
        60, fix="seconds a graceful shutdown may take"
    )
    wait_for: Literal["cloud-init", "address", "none"] = state(
        "cloud-init", fix="what makes the VM ready (providers/vm_ready.py)"
    )
    ready_timeout: whole(0, 86400, " seconds") = state(300, fix="seconds up waits for wait_for")
    migration_bandwidth_mib: whole(1, 1 << 20) | None = state(
        None, fix="MiB/s a live migration may use (default: as fast as the network)"
    )
    migration_max_downtime_ms: whole(1, 60000, " ms") | None = state(
        None, fix="the longest pause at the end of a live migration (QEMU's default: 300)"
    )
    # None, not False: a new field's default must not show existing VMs as changed
    migration_auto_converge: Bool | None = state(
        None, fix="true slows a guest that dirties memory faster than the network carries it"
    )
    # Each is its own resource (VmSnapshot): the VM itself does not change.
    snapshots: tuple[SnapshotName, ...] = state(
        (), fix="names of point-in-time copies of its disk and seed, such as [before-upgrade]"
    )
    rollback_to: SnapshotName | None = update(
        None,
        fix="one of its snapshots: a new value shuts the VM down and restarts it from that "
        "snapshot's disk (needs allow_rollback)",
    )
    # None, not False: see migration_auto_converge
    allow_rollback: Bool | None = state(
        None, fix="true lets rollback_to replace the running disk (the old one is kept)"
    )
    # Its own resource (VmBackup): the VM itself does not change.
    backup: Backup | None = state(
        None, fix="backups of its disk, such as {target: /mnt/cephfs/backups, keep: 7}"
    )
    fallback_node: NodeName | None = state(
        None,
        fix="where it runs while its node is in maintenance (default: the KVM node "
        "with the least VM memory)",
    )

    @field_validator("snapshots")
    @classmethod
    def _distinct(cls, value):
        twice = sorted({v for v in value if value.count(v) > 1})
        if twice:
            fail(f"{', '.join(twice)} listed twice")
        return value

    @field_validator("max_memory_mib", "max_vcpus")
    @classmethod
    def _at_least_current(cls, value, info: ValidationInfo):
        current = {"max_memory_mib": "memory_mib", "max_vcpus": "vcpus"}[info.field_name]
        if value is not None and info.data.get(current, 0) > value:
            fail(f"must be at least {current} ({info.data[current]})")
        return value


class VmInputs(Vm):
    """CloudVM's inputs: the VM as configured plus what the component derives."""

    # A domain of this name that does not carry the owner tag is not ours (libvirt_conn.own).
    owner: str | None = state(None)
    virt_type: Literal["kvm", "qemu"] = update("kvm", fix="qemu where KVM acceleration fails")
    connection: dict[str, Any] = update(fix="the node's connection")
    migration_key: str | None = update(None)
    storage: AbsPath = replace(fix="where templates/, virtualmachines/ and config/ live")
    shared_storage: Bool = update(False)
    password: str | None = update(None)  # secret; hashed into the seed


class MigrationKeyInputs(Spec):
    """MigrationKey: the stack's own SSH key pair for live migration."""

    # it also marks the key's lines in authorized_keys
    comment: text(r"[^\s\x00-\x1f]+", "must be one word, e.g. cephkvm-migration@prod") = replace()


class SnapshotInputs(Spec):
    """VmSnapshot: one named snapshot of a VM's disk and seed (CephFS snapshots of their
    directories). The VM's node only says where to quiesce it: a migration changes nothing."""

    vm: VmName = replace()
    name: SnapshotName = replace()
    storage: AbsPath = replace()
    node: str = state()
    connection: dict[str, Any] = state()
    owner: str | None = state(None)


class BackupInputs(Spec):
    """VmBackup: one VM's backups in target/VM/, full and incremental qcow2 files."""

    vm: VmName = replace()
    storage: AbsPath = replace()
    target: AbsPath = update()  # the next backup goes to the new one
    keep: whole(1, 1000) = update()  # prunes
    full_every: whole(1, 1000) = update()
    now: str | None = update(None)  # a new value takes a backup
    every: whole(60) | None = update(None)  # seconds: the node's schedule takes one this often
    node: str = state()
    connection: dict[str, Any] = state()
    owner: str | None = state(None)


class BackupScheduleInputs(Spec):
    """BackupSchedule: one KVM node's timer that takes the backups due of the VMs it runs."""

    node: str = replace()
    connection: dict[str, Any] = update()
    storage: AbsPath = update()  # its backup-policies/ hold every scheduled VM's policy
    ensure: Literal["up"] = update("up")  # read reports "down" when the timer does not run


class MigrationAccessInputs(Spec):
    """MigrationAccess: one KVM node accepts the migration key from its peers."""

    node: str = replace()
    connection: dict[str, Any] = update()
    public_key: text(r"\S+ \S+ \S+", "expected 'TYPE BASE64 COMMENT'") = update()
    private_key: str = update()  # secret
    # addresses the key may log in from (the KVM nodes)
    peers: tuple[str, ...] = update(fix="list the KVM nodes' addresses", min_length=1)
    # every KVM node's name, address, port, user and host key: where a VM's read looks for
    # it once moved by hand (the node keeps them, so no VM carries them: state VMs + nodes)
    peer_nodes: tuple[dict[str, Any], ...] = update(())


class BridgeInputs(Spec):
    """KvmBridge: one bridge on one node, and a libvirt network over it."""

    node: str = replace()
    name: IfName = replace(fix="name the bridge, such as br0")
    connection: dict[str, Any] = update()
    # member NICs; the first one's MAC becomes the bridge's
    interfaces: tuple[IfName, ...] = update(
        fix="list the NICs it goes over, such as [ens33]", min_length=1
    )
    addresses: tuple[Interface, ...] = update(())  # empty: the members' addresses move over
    gateway: IP | None = update(None)  # empty: a default route on a member moves over
    nameservers: tuple[IP, ...] = update(())  # netplan only: iproute2 keeps its resolver
    search: tuple[Domain, ...] = update(())  # netplan only
    mode: Literal["auto", "netplan", "iproute2"] = update("auto")
    network: str | None = update(None)  # its libvirt network (mode bridge); default: name
    vlan: whole(1, 4094) | None = update(None)  # over VLAN ID on the NICs (or on the bond)
    bond: Bond | None = update(None)  # the NICs are bonded first
    # used by the next change; nothing to do now
    confirm_timeout: whole(5, 600, " seconds") = state(30)  # then an unconfirmed change is undone
    ceph_timeout: whole(0) | None = state(None)  # for Ceph to recover after a change
