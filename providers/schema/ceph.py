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
    fsid: Fsid | None = None
    public_network: Cidr | None = hint(None, fix="the CIDR the mons listen on")
    cluster_network: Cidr | None = None
    osd_method: Literal["raw", "lvm"] | None = hint(
        None, fix="lvm on real hosts (the default), raw where device-mapper is missing")
    options: dict[CephSection, dict[OptionName, OptionValue]] = hint(
        {}, fix="map a section (global, mon, osd, ...) to {option: value}")
    allow_data_loss: Bool = False
    allow_osd_removal: Bool = False
    wipe_devices: Bool = False
    health_timeout: whole(10, 86400, " seconds") = 120


class Erasure(Section):
    k: int = hint(fix="data chunks, such as 2")
    m: int = hint(fix="coding chunks, such as 1")
    failure_domain: Literal["host", "osd"] = "host"
    allow_ec_overwrites: Bool = False


class Pool(Section):
    name: PoolName
    key: PoolName | None = hint(None, fix="the pool's first name, kept when it is renamed")
    type: Literal["replicated", "erasure"] | None = None
    size: int | None = None
    min_size: int | None = None
    pg_num: int | None = None
    autoscale: Literal["on", "off", "warn"] | None = None
    application: Word | None = None
    quota_max_bytes: whole(0) | None = None
    quota_max_objects: whole(0) | None = None
    allow_delete: Bool = False
    erasure: Erasure | None = None

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
    extra_data_pools: tuple[str, ...] = ()
    max_mds: whole(1, 16) = 1
    standby_count: whole(0, 16) | None = None
    layouts: dict[str, str] = hint({}, fix="map a directory to one of the filesystem's data "
                                   "pools")
    allow_delete: Bool = False


class Mount(Section):
    filesystem: str = hint(fix="a filesystem of cephkvm:filesystems")
    mountpoint: Mountpoint
    nodes: tuple[str, ...] | None = None
    client: Literal["fuse", "kernel"] = "fuse"
    options: tuple[MountOption, ...] = ()
    client_id: ClientId | None = None
    force_unmount: Bool = False
