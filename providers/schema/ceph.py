"""The Ceph part of the stack config: `cephkvm:ceph`, `cephkvm:pools[]`,
`cephkvm:filesystems[]`, `cephkvm:mounts[]`. Rules that need more than one value (pool size
against OSD hosts, a filesystem's pools) are components/config_ceph.py's."""
from __future__ import annotations

from typing import Any, Literal

from providers.schema.types import Bool, Cidr, PoolName, Section, checked, hint, text, whole

CEPH_SECTION = r"(global|mon|mgr|osd|mds|client)(\.[A-Za-z0-9_.-]+)?"
SYSTEM_DIRS = ("", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/mnt", "/opt",
               "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
               "/var/lib", "/var/lib/ceph", "/var/lib/libvirt", "/var/log")

ClusterName = text(r"[a-z][a-z0-9]{0,15}", "must be a short lower-case name starting with a "
                   "letter (usually `ceph`)")
Fsid = text(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "is not a UUID; leave it out to "
            "let cephkvm generate one")
CephSection = text(CEPH_SECTION, "is not a Ceph section (global, mon, mgr, osd, mds, client, "
                   "or one of them .ID)")
OptionName = text(r"[a-z][a-z0-9_]*", "is not a Ceph option name (lower case, digits, _)")
OptionValue = checked(Any, lambda v: "give one value (a number, a word, true/false)"
                      if isinstance(v, (dict, list)) or v is None else None,
                      {"type": ["string", "number", "boolean"]})
ClientId = text(r"(?!admin$)[A-Za-z0-9_-]{1,64}", "must be a plain name (not admin: mounts "
                "get keys for their filesystem only)")
Word = text(r"[A-Za-z0-9_.-]{1,64}", "must be one word (letters, digits, _ . -)")
MountOption = text(r"[A-Za-z0-9_.=:/+-]+", "must be one mount option such as noatime (no "
                   "commas or spaces: list each option apart)")


def _mountpoint(path: str) -> str | None:
    if not path.startswith("/") or " " in path:
        return f"{path!r} must be an absolute path without spaces"
    if path.rstrip("/") in SYSTEM_DIRS or ".." in path.split("/"):
        return (f"{path!r} is a system directory; mount CephFS on a directory of its own, "
                "such as /mnt/cephfs")
    return None


Mountpoint = checked(str, _mountpoint, {"type": "string", "pattern": "^/"})


class Ceph(Section):
    cluster_name: ClusterName = "ceph"
    fsid: Fsid | None = hint(None, fix="the cluster's identity: generated once and kept in "
                             "state; give the current one to adopt a cluster")
    public_network: Cidr | None = hint(None, fix="the CIDR the mons listen on")
    cluster_network: Cidr | None = hint(None, fix="OSD replication traffic, if apart")
    osd_method: Literal["raw", "lvm"] | None = hint(
        None, fix="lvm on real hosts (the default), raw where device-mapper is missing")
    options: dict[CephSection, dict[OptionName, OptionValue]] = hint(
        {}, fix="map a section (global, mon, osd, ...) to {option: value}")
    allow_data_loss: Bool = hint(False, fix="lets destroy remove the cluster, its mons and OSDs")
    allow_osd_removal: Bool = hint(False, fix="lets a drained OSD go when its disk or the osd "
                                   "role is removed")
    wipe_devices: Bool = hint(False, fix="lets an OSD be made on a device that holds data")
    health_timeout: whole(10, 86400, " seconds") = hint(120, fix="seconds to wait for health")


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
    pg_num: int | None = hint(None, fix="placement groups; unset: the autoscaler decides")
    autoscale: Literal["on", "off", "warn"] | None = hint(None, fix="default: off with "
                                                          "pg_num, else on")
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
            props.update(ec_k=self.erasure.k, ec_m=self.erasure.m,
                         ec_failure_domain=self.erasure.failure_domain,
                         ec_overwrites=self.erasure.allow_ec_overwrites)
        return props


class Filesystem(Section):
    name: PoolName = hint(fix="the filesystem's name")
    metadata_pool: str = hint(fix="a replicated pool of cephkvm:pools")
    data_pool: str = hint(fix="a replicated pool of cephkvm:pools")
    extra_data_pools: tuple[str, ...] = hint((), fix="more data pools (EC pools go here)")
    max_mds: whole(1, 16) = hint(1, fix="active MDS daemons")
    standby_count: whole(0, 16) | None = hint(None, fix="default: 1 when there is a second MDS")
    layouts: dict[str, str] = hint({}, fix="map a directory to one of the filesystem's data "
                                   "pools")
    allow_delete: Bool = hint(False, fix="lets the filesystem (and data pool removals) go")


class Mount(Section):
    filesystem: str = hint(fix="a filesystem of cephkvm:filesystems")
    mountpoint: Mountpoint
    nodes: tuple[str, ...] | None = hint(None, fix="default: every node")
    client: Literal["fuse", "kernel"] = hint("fuse", fix="ceph-fuse, or the kernel client")
    options: tuple[MountOption, ...] = hint((), fix="mount options, one per item")
    client_id: ClientId | None = hint(None, fix="the cephx client (ID-NODE on each node)")
    force_unmount: Bool = hint(False, fix="lets a busy mount be unmounted lazily")
