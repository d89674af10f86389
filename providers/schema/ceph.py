"""The Ceph part of the stack config: `cephkvm:ceph`, `cephkvm:pools[]`,
`cephkvm:filesystems[]`, `cephkvm:mounts[]`. Rules that need more than one value (pool size
against OSD hosts, a filesystem's pools) are components/config_ceph.py's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationInfo, field_validator

from providers.schema.types import (
    Bool,
    Cidr,
    DevicePath,
    PoolName,
    Section,
    Spec,
    checked,
    fail,
    hint,
    replace,
    state,
    text,
    update,
    whole,
)

CEPH_SECTION = r"(global|mon|mgr|osd|mds|client)(\.[A-Za-z0-9_.-]+)?"
SYSTEM_DIRS = (
    "",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/lib",
    "/var/lib/ceph",
    "/var/lib/libvirt",
    "/var/log",
)

ClusterName = text(
    r"[a-z][a-z0-9]{0,15}",
    "must be a short lower-case name starting with a letter (usually `ceph`)",
)
Fsid = text(
    r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}",
    "is not a UUID; leave it out to let cephkvm generate one",
)
CephSection = text(
    CEPH_SECTION, "is not a Ceph section (global, mon, mgr, osd, mds, client, or one of them .ID)"
)
OptionName = text(r"[a-z][a-z0-9_]*", "is not a Ceph option name (lower case, digits, _)")
OptionValue = checked(
    Any,
    lambda v: (
        "give one value (a number, a word, true/false)"
        if isinstance(v, (dict, list)) or v is None
        else None
    ),
    {"type": ["string", "number", "boolean"]},
)
ClientId = text(
    r"(?!admin$)[A-Za-z0-9_.-]{1,64}",
    "must be a plain name (not admin: mounts get keys for their filesystem only)",
)
Word = text(r"[A-Za-z0-9_.-]{1,64}", "must be one word (letters, digits, _ . -)")
MountOption = text(
    r"[A-Za-z0-9_.=:/+-]+",
    "must be one mount option such as noatime (no commas or spaces: list each option apart)",
)


def _mountpoint(path: str) -> str | None:
    if not path.startswith("/") or " " in path:
        return f"{path!r} must be an absolute path without spaces"
    if path.rstrip("/") in SYSTEM_DIRS or ".." in path.split("/"):
        return (
            f"{path!r} is a system directory; mount CephFS on a directory of its own, "
            "such as /mnt/cephfs"
        )
    return None


Mountpoint = checked(str, _mountpoint, {"type": "string", "pattern": "^/"})


class Dashboard(Section):
    """`cephkvm:ceph.dashboard`: the mgrs' web UI, over HTTPS, with one administrator whose
    password cephkvm generates (the stack's secret output `ceph.dashboard.password`)."""

    port: whole(1024, 65535) = hint(8443, fix="the HTTPS port every mgr serves it on")
    user: Word = hint("admin", fix="the administrator account cephkvm makes")


class Ceph(Section):
    cluster_name: ClusterName = "ceph"
    fsid: Fsid | None = hint(
        None,
        fix="the cluster's identity: generated once and kept in "
        "state; give the current one to adopt a cluster",
    )
    public_network: Cidr | None = hint(None, fix="the CIDR the mons listen on")
    cluster_network: Cidr | None = hint(None, fix="OSD replication traffic, if apart")
    osd_method: Literal["raw", "lvm"] | None = hint(
        None, fix="lvm on real hosts (the default), raw where device-mapper is missing"
    )
    options: dict[CephSection, dict[OptionName, OptionValue]] = hint(
        {}, fix="map a section (global, mon, osd, ...) to {option: value}"
    )
    allow_data_loss: Bool = hint(False, fix="lets destroy remove the cluster, its mons and OSDs")
    allow_osd_removal: Bool = hint(
        False, fix="lets a drained OSD go when its disk or the osd role is removed"
    )
    wipe_devices: Bool = hint(False, fix="lets an OSD be made on a device that holds data")
    restart: Word | None = hint(
        None,
        fix="a new value restarts every Ceph daemon, one node at "
        "a time: mons, mgrs, OSDs, MDS (e.g. the date)",
    )
    health_timeout: whole(10, 86400, " seconds") = hint(120, fix="seconds to wait for health")
    dashboard: Dashboard | None = hint(
        None, fix="{} (or true) turns the Ceph dashboard on; {port, user} to choose"
    )

    @field_validator("dashboard", mode="before")
    @classmethod
    def _dashboard_switch(cls, value):
        """`dashboard: true` is the dashboard with its defaults, `false` none."""
        return {} if value is True else None if value is False else value


class Erasure(Section):
    k: int = hint(fix="data chunks, such as 2")
    m: int = hint(fix="coding chunks, such as 1")
    failure_domain: Literal["host", "osd"] = "host"
    allow_ec_overwrites: Bool = False


class Pool(Section):
    name: PoolName
    key: PoolName | None = hint(None, fix="the pool's first name, kept when it is renamed")
    type: Literal["replicated", "erasure"] | None = None
    size: int | None = hint(None, fix="replicas (default 3; erasure: k+m)")
    min_size: int | None = hint(None, fix="replicas needed for I/O (default 2; erasure: k+1)")
    pg_num: int | None = hint(
        None, fix="placement groups, a power of two; unset: the autoscaler decides"
    )
    autoscale: Literal["on", "off", "warn"] | None = hint(
        None, fix="default: off with pg_num, else on"
    )
    application: Word | None = hint(None, fix="cephfs, rbd, rgw, ...")
    quota_max_bytes: whole(0) | None = hint(None, fix="0: no quota")
    quota_max_objects: whole(0) | None = hint(None, fix="0: no quota")
    allow_delete: Bool = hint(False, fix="lets the pool and its data be deleted")
    erasure: Erasure | None = hint(None, fix="makes it an erasure-coded pool")

    def inputs(self) -> dict:
        """The pool in CephPool's input shape (erasure settings flattened)."""
        props = self.model_dump(mode="json", exclude_none=True, exclude={"erasure"})
        props.setdefault("type", "erasure" if self.erasure else "replicated")
        if props["type"] == "erasure" and self.erasure:
            props.update(
                ec_k=self.erasure.k,
                ec_m=self.erasure.m,
                ec_failure_domain=self.erasure.failure_domain,
                ec_overwrites=self.erasure.allow_ec_overwrites,
            )
        return props


class Filesystem(Spec):
    name: PoolName = replace(fix="the filesystem's name")
    metadata_pool: str = replace(fix="a replicated pool of cephkvm:pools")
    # replicated: Ceph keeps the backtraces there
    data_pool: str = replace(fix="a replicated pool of cephkvm:pools")
    extra_data_pools: tuple[str, ...] = update((), fix="more data pools (EC pools go here)")
    max_mds: whole(1, 16) = update(1, fix="active MDS daemons")
    standby_count: whole(0, 16) | None = update(None, fix="default: 1 when there is a second MDS")
    # {directory: pool}: files under the directory go to that data pool (an EC extra pool)
    layouts: dict[str, str] = update(
        {}, fix="map a directory to one of the filesystem's data pools"
    )
    allow_delete: Bool = state(False, fix="lets the filesystem (and data pool removals) go")

    @field_validator("layouts")
    @classmethod
    def _layouts_on_own_pools(cls, layouts, info: ValidationInfo):
        pools = (info.data.get("data_pool"), *info.data.get("extra_data_pools", ()))
        for directory, pool in layouts.items():
            if not directory.startswith("/") or pool not in pools:
                fail(
                    f"{directory}: {pool} must be an absolute directory mapped to one of "
                    f"this filesystem's data pools ({', '.join(map(str, pools))})"
                )
        return layouts


class Mount(Section):
    filesystem: str = hint(fix="a filesystem of cephkvm:filesystems")
    mountpoint: Mountpoint
    nodes: tuple[str, ...] | None = hint(None, fix="default: every node")
    client: Literal["fuse", "kernel"] = hint("fuse", fix="ceph-fuse, or the kernel client")
    options: tuple[MountOption, ...] = hint((), fix="mount options, one per item")
    client_id: ClientId | None = hint(None, fix="the cephx client (ID-NODE on each node)")
    force_unmount: Bool = hint(False, fix="lets a busy mount be unmounted lazily")


# --- the Ceph resources' inputs ------------------------------------------------------------
# A resource's connection: {name, address, port, user, key_file, host_key, known_hosts,
# trust_on_first_use, state_host_key} (providers/base.py CONNECTION_FIELDS); admin: the
# connections of nodes holding the admin keyring.
Connection = dict[str, Any]
# maintenance: stopped, its node is in maintenance (components/config_maintenance.py)
Ensure = Literal["up", "maintenance"]


class ClusterInputs(Spec):
    """CephCluster: the cluster's identity (fsid, keys) and ceph.conf."""

    cluster_name: ClusterName = replace("ceph")
    pin_fsid: Fsid | None = update(None, fix="the fsid the cluster has, to adopt it")
    public_network: Cidr = update(fix="set the CIDR mons listen on")
    cluster_network: Cidr | None = update(None)
    owner: str = update(fix="name the stack (project/stack) that owns the cluster")
    # {name, address, connection, ssh_private_key?}: every node
    nodes: tuple[dict[str, Any], ...] = update()
    # node names running a mon: ceph.conf's mon_host, and the initial monmap
    mons: tuple[str, ...] = update(fix="at least one node needs the mon role", min_length=1)
    allow_data_loss: Bool | None = state(None)  # delete is refused unless true


class ConfInputs(Spec):
    """CephConf: ceph.conf and (admin nodes) the admin keyring on one node."""

    cluster_name: ClusterName = replace("ceph")
    node: str = replace()
    connection: Connection = update()
    conf: str = update(fix="ceph.conf's text (CephCluster's conf output)")
    admin: Bool = update(False)
    admin_key: str | None = update(None)  # secret: client.admin's key (when admin)


class ConfigInputs(Spec):
    """CephConfig: the cluster's central options (`ceph config set`)."""

    cluster_name: ClusterName = replace("ceph")
    fsid: str = replace()
    admin: tuple[Connection, ...] = state(
        fix="list at least one node with the admin keyring", min_length=1
    )
    mons: tuple[str, ...] = update(())  # in quorum before anything is set
    # an option no longer listed is removed (`ceph config rm`)
    options: dict[str, dict[str, Any]] = update(
        {}, fix="map a section (global, mon, osd, ...) to {option: value}"
    )
    timeout: whole(0) = state(120)
    allow_data_loss: Bool | None = state(None)  # the guard in front of the mons


class DashboardInputs(Spec):
    """CephDashboard: the mgr module, its certificate, addresses and administrator."""

    cluster_name: ClusterName = replace("ceph")
    fsid: str = replace()
    admin: tuple[Connection, ...] = state(
        fix="list at least one node with the admin keyring", min_length=1
    )
    mgrs: dict[str, str] = update(fix="map each mgr to the address it serves on", min_length=1)
    port: whole(1024, 65535) = update(8443)
    user: Word = update("admin")
    # read reports "down" when the module is on but the administrator is missing
    ensure: Literal["up"] = update("up")
    timeout: whole(0) = state(120)


class DaemonInputs(Spec):
    """CephMgr, CephMds: a stateless daemon on one node (id = node name)."""

    cluster_name: ClusterName = replace("ceph")
    fsid: str = replace()
    node: str = replace()
    connection: Connection = update()
    ensure: Ensure = update("up")  # read reports "down" when it is not running/registered
    restart: Word | None = update(None)  # a new value: one gated restart (cephkvm:ceph.restart)
    timeout: whole(0) = state(120)


class MonInputs(DaemonInputs):
    """CephMon: a mon on one node (id = node name), at its public address."""

    address: str = replace(fix="the node's public address (the mon's, in the monmap)")
    # the last mon, or one whose removal loses quorum, may be removed
    allow_data_loss: Bool | None = state(None)


class OsdInputs(Spec):
    """CephOSD: one OSD on one device."""

    cluster_name: ClusterName = replace("ceph")
    fsid: str = replace()
    node: str = replace()  # = its CRUSH host
    connection: Connection = update()
    device: DevicePath = replace()
    method: Literal["raw", "lvm"] = replace("raw", fix="raw without systemd/device-mapper")
    wipe: Bool | None = state(None)  # a device holding data may be wiped
    allow_removal: Bool | None = state(None)  # delete (drain, purge, zap) is allowed
    allow_data_loss: Bool | None = state(None)  # a dead OSD that cannot drain may be purged
    ensure: Ensure = update("up")  # read reports "down" when it is not up+in
    restart: Word | None = update(None)  # a new value: one gated restart (cephkvm:ceph.restart)
    timeout: whole(0) = state(180)  # for up+in, and for the drain on delete


class PoolInputs(Spec):
    """CephPool: a replicated or erasure-coded pool (size = k+m for erasure)."""

    cluster_name: ClusterName = replace("ceph")
    fsid: str = replace()
    admin: tuple[Connection, ...] = state(())
    name: PoolName = update()  # a rename is in place
    key: PoolName | None = replace(None)  # its identity in the stack: its first name
    type: Literal["replicated", "erasure"] = replace("replicated")
    size: int | None = update(None)
    min_size: int | None = update(None)
    ec_k: int | None = replace(None)
    ec_m: int | None = replace(None)
    ec_failure_domain: Literal["host", "osd"] | None = replace(None)
    ec_overwrites: Bool | None = update(None)  # needed for CephFS and RBD data
    pg_num: int | None = update(None)  # unset: the autoscaler decides
    autoscale: Literal["on", "off", "warn"] | None = update(None)
    application: Word | None = update(None)
    quota_max_bytes: whole(0) = update(0)  # 0: none
    quota_max_objects: whole(0) = update(0)
    allow_delete: Bool | None = state(None)
    timeout: whole(0) = state(300)  # for the pool's PGs to be active+clean


class FilesystemInputs(Filesystem):
    """CephFilesystem: the filesystem as configured, on the stack's cluster."""

    cluster_name: ClusterName = replace("ceph")
    fsid: str = replace()
    admin: tuple[Connection, ...] = state(())
    standby_count: whole(0, 16) = update(0)
    timeout: whole(0) = state(180)  # for an active MDS and health
    # The pool fields above hold each pool's key (its first name), so renaming a pool is no
    # replace; {key: name} for the pools whose name is no longer their key.
    pool_names: dict[str, str] = state({})


class MountInputs(Spec):
    """CephFSMount: one CephFS mount on one node, in fstab."""

    cluster_name: ClusterName = replace("ceph")
    fsid: str = replace()
    node: str = replace()
    connection: Connection = update()
    admin: tuple[Connection, ...] = state(())  # the client key is made there
    fs_name: str = replace()
    client_id: ClientId | None = replace(None)  # default: FS-NODE; caps for fs_name only
    mountpoint: Mountpoint = replace()
    client: Literal["fuse", "kernel"] = update("fuse", fix="fuse works everywhere")
    options: tuple[MountOption, ...] = update(())
    mon_hosts: tuple[str, ...] | None = update(None)  # ip:port of the mons (kernel client)
    force_unmount: Bool = state(False)  # delete unmounts lazily even when busy
    ensure: Literal["mounted"] = update("mounted")  # read reports "unmounted" when it is not
