"""The Ceph part of the stack config: `cephkvm:ceph`, `cephkvm:pools`, `cephkvm:filesystems`,
`cephkvm:mounts`. Validated against the nodes (roles, disks) at preview; every problem names
its key path and the fix. Pure: reads only the lab inventory file for the lab's subnet.

    cephkvm:ceph:         {cluster_name, fsid, public_network, cluster_network, osd_method,
                           options: {section: {option: value}}, allow_data_loss,
                           allow_osd_removal, wipe_devices, health_timeout}
    cephkvm:pools:        [{name, key (its first name: a rename in place), type:
                            replicated|erasure, size, min_size, pg_num, autoscale,
                            application, quota_max_bytes, quota_max_objects, allow_delete,
                            erasure: {k, m, failure_domain, allow_ec_overwrites}}]
    cephkvm:filesystems:  [{name, metadata_pool, data_pool, extra_data_pools, max_mds,
                            standby_count, layouts: {directory: pool}, allow_delete}]
    cephkvm:mounts:       [{filesystem, mountpoint, nodes (default: all), client: fuse|kernel,
                            options, client_id, force_unmount}]
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field

from components.config_types import boolean, in_network, is_cidr, unknown_keys
from providers.ceph_pool import check_pool

KEYS = ("ceph", "pools", "filesystems", "mounts")
CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")
POOL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OSD_METHODS = ("raw", "lvm")
FAILURE_DOMAINS = ("host", "osd")
CEPH_FIELDS = ("cluster_name", "fsid", "public_network", "cluster_network", "osd_method",
               "options", "allow_data_loss", "allow_osd_removal", "wipe_devices",
               "health_timeout")
POOL_FIELDS = ("name", "key", "type", "size", "min_size", "pg_num", "autoscale",
               "application", "quota_max_bytes", "quota_max_objects", "allow_delete",
               "erasure")
ERASURE_FIELDS = ("k", "m", "failure_domain", "allow_ec_overwrites")
FILESYSTEM_FIELDS = ("name", "metadata_pool", "data_pool", "extra_data_pools", "max_mds",
                     "standby_count", "layouts", "allow_delete")
MOUNT_FIELDS = ("filesystem", "mountpoint", "nodes", "client", "options", "client_id",
                "force_unmount")


def key(path: str) -> str:
    return f"cephkvm:{path}"


@dataclass(frozen=True)
class CephConfig:
    cluster_name: str = "ceph"
    fsid: str | None = None
    public_network: str = ""
    cluster_network: str | None = None
    osd_method: str = "lvm"
    options: dict = field(default_factory=dict)
    allow_data_loss: bool = False
    allow_osd_removal: bool = False  # drained OSDs may go (removing a disk or the osd role)
    wipe_devices: bool = False
    health_timeout: int = 120
    mons: tuple = ()
    mgrs: tuple = ()
    mdss: tuple = ()
    osds: tuple = ()          # (node name, device)
    pools: tuple = ()         # dicts in CephPool's input shape
    filesystems: tuple = ()   # dicts in CephFilesystem's input shape
    mounts: tuple = ()        # dicts: node, filesystem, mountpoint, client, options, ...
    warnings: tuple = ()


def load(raw: dict, nodes: tuple, lab: bool, project_dir: str, problems: list):
    """The CephConfig, or None when the stack has no `cephkvm:ceph` section."""
    section = raw.get("ceph")
    if section is None:
        for name in ("pools", "filesystems", "mounts"):
            if raw.get(name):
                problems.append(f"{key(name)}: needs a cephkvm:ceph section (public_network "
                                "at least)")
        return None
    if not isinstance(section, dict):
        problems.append(f"{key('ceph')}: must be a mapping (public_network, options, ...)")
        return None
    before = len(problems)
    warnings: list = []
    cluster = _cluster(section, lab, project_dir, problems)
    by_name = {n.name: n for n in nodes}
    roles = {r: tuple(n.name for n in nodes if r in n.roles) for r in ("mon", "mgr", "mds")}
    _check_mons(roles["mon"], warnings, problems)
    _check_mon_addresses(nodes, cluster["public_network"], problems)
    osds = _osds(nodes, problems)
    pools = _pools(raw.get("pools") or [], osds, problems)
    filesystems = _filesystems(raw.get("filesystems") or [], pools, roles["mds"], problems)
    mounts = _mounts(raw.get("mounts") or [], filesystems, by_name, problems)
    if len(problems) > before:
        return None
    return CephConfig(**cluster, mons=roles["mon"], mgrs=roles["mgr"], mdss=roles["mds"],
                      osds=tuple(osds), pools=tuple(pools.values()),
                      filesystems=tuple(filesystems.values()), mounts=tuple(mounts),
                      warnings=tuple(warnings))


def _cluster(s: dict, lab: bool, project_dir: str, problems: list) -> dict:
    unknown_keys(s, CEPH_FIELDS, "ceph", problems)
    name = str(s.get("cluster_name", "ceph"))
    if not CLUSTER_NAME.fullmatch(name):
        problems.append(f"{key('ceph.cluster_name')}: {name!r} must be a short lower-case name "
                        "starting with a letter (usually `ceph`)")
    public = s.get("public_network") or (lab_subnet(project_dir) if lab else None)
    if not public:
        problems.append(f"{key('ceph.public_network')}: set the CIDR the mons listen on, "
                        "e.g. 10.204.10.0/24")
    for field_name, value in (("public_network", public),
                              ("cluster_network", s.get("cluster_network"))):
        if value is not None and not is_cidr(value):
            problems.append(f"{key('ceph.' + field_name)}: {value!r} is not a network in CIDR "
                            "form such as 10.204.10.0/24")
    method = s.get("osd_method", "raw" if lab else "lvm")
    if method not in OSD_METHODS:
        problems.append(f"{key('ceph.osd_method')}: {method!r} is not one of "
                        f"{', '.join(OSD_METHODS)} (lvm on real hosts, raw where device-mapper"
                        " is missing)")
    options = s.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        problems.append(f"{key('ceph.options')}: must map a section (global, mon, osd, ...) to "
                        "{option: value}")
        options = {}
    _check_options(options, problems)
    timeout = s.get("health_timeout", 120)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 10 <= timeout <= 86400:
        problems.append(f"{key('ceph.health_timeout')}: must be seconds from 10 to 86400")
    fsid = s.get("fsid")
    if fsid is not None and not re.fullmatch(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$",
                                         str(fsid)):
        problems.append(f"{key('ceph.fsid')}: {fsid!r} is not a UUID; leave it out to let "
                        "cephkvm generate one")
    return {"cluster_name": name, "fsid": fsid, "public_network": public or "",
            "cluster_network": s.get("cluster_network"), "osd_method": method,
            "options": {sec: {k: v for k, v in o.items()} for sec, o in options.items()},
            "allow_data_loss": boolean(s, "allow_data_loss", "ceph.allow_data_loss", problems),
            "allow_osd_removal": boolean(s, "allow_osd_removal", "ceph.allow_osd_removal",
                                         problems),
            "wipe_devices": boolean(s, "wipe_devices", "ceph.wipe_devices", problems),
            "health_timeout": timeout if isinstance(timeout, int) else 120}


SYSTEM_DIRS = ("", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/mnt", "/opt",
               "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
               "/var/lib", "/var/lib/ceph", "/var/lib/libvirt", "/var/log")
SECTION = re.compile(r"(global|mon|mgr|osd|mds|client)(\.[A-Za-z0-9_.-]+)?")
OPTION = re.compile(r"[a-z][a-z0-9_]*")


def _check_options(options: dict, problems: list) -> None:
    for section, values in options.items():
        if not SECTION.fullmatch(str(section)):
            problems.append(f"{key(f'ceph.options.{section}')}: not a Ceph section (global, "
                            "mon, mgr, osd, mds, client, or one of them .ID)")
        for name, value in values.items():
            where = key(f"ceph.options.{section}.{name}")
            if not OPTION.fullmatch(str(name)):
                problems.append(f"{where}: not a Ceph option name (lower case, digits, _)")
            if isinstance(value, (dict, list)) or value is None:
                problems.append(f"{where}: give one value (a number, a word, true/false)")


def lab_subnet(project_dir: str) -> str | None:
    path = os.path.join(project_dir, ".lab" + os.environ.get("CEPHKVM_LAB", ""),
                        "inventory.json")
    try:
        with open(path) as f:
            return json.load(f).get("subnet")
    except (OSError, ValueError):
        return None  # config.py already reports a missing lab inventory




def _check_mons(mons: tuple, warnings: list, problems: list) -> None:
    if not mons:
        problems.append(f"{key('nodes')}: no node has the mon role; give it to 1, 3 or 5 "
                        "nodes (roles: [mon, ...])")
    elif len(mons) % 2 == 0:
        warnings.append(f"{key('nodes')}: {len(mons)} mons ({', '.join(mons)}) cannot "
                        f"outvote a split; use {len(mons) + 1} or {len(mons) - 1}")


def _check_mon_addresses(nodes: tuple, public: str, problems: list) -> None:
    """A mon binds to its address in the monmap: it must lie in public_network."""
    for i, node in enumerate(nodes):
        if "mon" not in node.roles or not is_cidr(public):
            continue
        field = "ceph_address" if node.ceph_address else "address"
        inside = in_network(node.public_address, public)
        if inside is None:
            problems.append(f"{key(f'nodes[{i}].{field}')}: {node.name} is a mon, so Ceph needs "
                            "its IP address; set nodes[{i}].ceph_address to its address in "
                            f"{public}".replace("{i}", str(i)))
        elif not inside:
            problems.append(f"{key(f'nodes[{i}].{field}')}: {node.public_address} is outside "
                            f"cephkvm:ceph.public_network {public}, so its mon could not bind; "
                            f"set nodes[{i}].ceph_address to {node.name}'s address in {public}")


def _osds(nodes: tuple, problems: list) -> list:
    osds = []
    for i, node in enumerate(nodes):
        if "osd" not in node.roles:
            continue
        seen = set()
        for device in node.disks:
            if not device.startswith("/dev/"):
                problems.append(f"{key(f'nodes[{i}].disks')}: {device!r} must be an absolute "
                                "device path such as /dev/sdb")
            if device in seen:
                problems.append(f"{key(f'nodes[{i}].disks')}: {device} is listed twice; one "
                                "OSD per device")
            seen.add(device)
            osds.append((node.name, device))
    return osds


def _domains(osds: list, domain: str) -> int:
    return len({n for n, _ in osds}) if domain == "host" else len(osds)


def _pools(raw, osds: list, problems: list) -> dict:
    if not isinstance(raw, list):
        problems.append(f"{key('pools')}: must be a list of pools (name, size, ...)")
        return {}
    pools = {}
    for i, item in enumerate(raw):
        path = f"pools[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{key(path)}: must be a mapping with at least a name")
            continue
        unknown_keys(item, POOL_FIELDS, path, problems)
        unknown_keys(item.get("erasure"), ERASURE_FIELDS, path + ".erasure", problems)
        name = str(item.get("name", ""))
        if not POOL_NAME.fullmatch(name):
            problems.append(f"{key(path + '.name')}: {name!r} is not a pool name (letters, "
                            "digits, _ . -)")
        if "key" in item and not POOL_NAME.fullmatch(str(item["key"])):
            problems.append(f"{key(path + '.key')}: {item['key']!r} must look like a pool "
                            "name: the pool's first name, kept when it is renamed")
        if name in pools:
            problems.append(f"{key(path + '.name')}: pool {name!r} is listed twice")
        props = {k: v for k, v in item.items() if k != "erasure"}
        props["allow_delete"] = boolean(item, "allow_delete", path + ".allow_delete", problems)
        props.setdefault("type", "erasure" if "erasure" in item else "replicated")
        ec = item.get("erasure") or {}
        if props["type"] == "erasure":
            props.update({"ec_k": ec.get("k"), "ec_m": ec.get("m"),
                          "ec_failure_domain": ec.get("failure_domain", "host"),
                          "ec_overwrites": boolean(ec, "allow_ec_overwrites",
                                                   path + ".erasure.allow_ec_overwrites",
                                                   problems)})
        for failure in check_pool(copy.deepcopy(props)):
            problems.append(f"{key(path + '.' + _config_field(failure.property))}: "
                            f"{failure.reason}")
        if props["type"] == "erasure" and isinstance(ec.get("k"), int) and \
                isinstance(ec.get("m"), int):
            domain = props["ec_failure_domain"]
            if domain not in FAILURE_DOMAINS:
                problems.append(f"{key(path + '.erasure.failure_domain')}: use one of "
                                f"{', '.join(FAILURE_DOMAINS)}")
            elif ec["k"] + ec["m"] > _domains(osds, domain):
                problems.append(
                    f"{key(path + '.erasure')}: k+m = {ec['k'] + ec['m']} but only "
                    f"{_domains(osds, domain)} {domain}(s) hold OSDs; lower k or m, add "
                    "OSDs, or use failure_domain: osd")
        elif isinstance(props.get("size"), int) and props["size"] > _domains(osds, "host") \
                and osds:
            problems.append(f"{key(path + '.size')}: {props['size']} copies but only "
                            f"{_domains(osds, 'host')} host(s) hold OSDs; lower size or add "
                            "OSDs on more hosts")
        pools[name] = props
    return pools


def _config_field(provider_field: str) -> str:
    return {"ec_k": "erasure.k", "ec_m": "erasure.m"}.get(provider_field, provider_field)


def _filesystems(raw, pools: dict, mdss: tuple, problems: list) -> dict:
    if not isinstance(raw, list):
        problems.append(f"{key('filesystems')}: must be a list (name, metadata_pool, "
                        "data_pool)")
        return {}
    found, used = {}, {}
    for i, item in enumerate(raw):
        path = f"filesystems[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{key(path)}: must be a mapping (name, metadata_pool, data_pool)")
            continue
        unknown_keys(item, FILESYSTEM_FIELDS, path, problems)
        name = str(item.get("name", ""))
        if not POOL_NAME.fullmatch(name):
            problems.append(f"{key(path + '.name')}: {name!r} is not a valid name")
        if name in found:
            problems.append(f"{key(path + '.name')}: filesystem {name!r} is listed twice")
        extra = item.get("extra_data_pools") or []
        for field_name, pool in ([("metadata_pool", item.get("metadata_pool")),
                                  ("data_pool", item.get("data_pool"))]
                                 + [(f"extra_data_pools[{j}]", p) for j, p in enumerate(extra)]):
            where = key(f"{path}.{field_name}")
            if pool not in pools:
                problems.append(f"{where}: {pool!r} is not a pool in cephkvm:pools")
                continue
            if pool in used and used[pool] != name:
                problems.append(f"{where}: pool {pool!r} is already used by filesystem "
                                f"{used[pool]!r}; each filesystem needs its own pools")
            used[pool] = name
            erasure = pools[pool].get("type") == "erasure"
            if erasure and field_name in ("metadata_pool", "data_pool"):
                problems.append(f"{where}: {pool!r} is erasure-coded; CephFS wants a "
                                "replicated pool here and the EC pool under extra_data_pools")
            if erasure and not pools[pool].get("ec_overwrites"):
                problems.append(f"{key('pools')}: {pool!r} serves CephFS; set erasure."
                                "allow_ec_overwrites: true")
        if not mdss:
            problems.append(f"{key(path)}: no node has the mds role; CephFS needs one")
        layouts = item.get("layouts") or {}
        for directory, pool in (layouts.items() if isinstance(layouts, dict) else []):
            if not str(directory).startswith("/") or pool not in [item.get("data_pool"),
                                                                   *extra]:
                problems.append(f"{key(path + '.layouts')}: {directory}: {pool} must be an "
                                "absolute directory mapped to one of this filesystem's data "
                                "pools")
        found[name] = {"name": name, "metadata_pool": item.get("metadata_pool"),
                       "data_pool": item.get("data_pool"), "extra_data_pools": list(extra),
                       "max_mds": item.get("max_mds", 1),
                       "standby_count": item.get("standby_count",
                                                 min(1, max(len(mdss) - 1, 0))),
                       "layouts": dict(layouts) if isinstance(layouts, dict) else {},
                       "allow_delete": boolean(item, "allow_delete", path + ".allow_delete",
                                               problems)}
    return found


def _mounts(raw, filesystems: dict, nodes: dict, problems: list) -> list:
    if not isinstance(raw, list):
        problems.append(f"{key('mounts')}: must be a list (filesystem, mountpoint, nodes)")
        return []
    mounts, seen = [], set()
    for i, item in enumerate(raw):
        path = f"mounts[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{key(path)}: must be a mapping (filesystem, mountpoint)")
            continue
        unknown_keys(item, MOUNT_FIELDS, path, problems)
        fs, mp = item.get("filesystem"), str(item.get("mountpoint", ""))
        if fs not in filesystems:
            problems.append(f"{key(path + '.filesystem')}: {fs!r} is not in "
                            "cephkvm:filesystems")
        if not mp.startswith("/") or " " in mp:
            problems.append(f"{key(path + '.mountpoint')}: {mp!r} must be an absolute path "
                            "without spaces")
        elif mp.rstrip("/") in SYSTEM_DIRS or ".." in mp.split("/"):
            problems.append(f"{key(path + '.mountpoint')}: {mp!r} is a system directory; "
                            "mount CephFS on a directory of its own, such as /mnt/cephfs")
        client = item.get("client", "fuse")
        if client not in ("fuse", "kernel"):
            problems.append(f"{key(path + '.client')}: {client!r} is not fuse or kernel")
        client_id = item.get("client_id")
        if client_id is not None and (not CLIENT_ID.fullmatch(str(client_id))
                                      or client_id == "admin"):
            problems.append(f"{key(path + '.client_id')}: {client_id!r} must be a plain name "
                            "(not admin: mounts get keys for their filesystem only)")
        targets = item.get("nodes", list(nodes))
        for node in targets:
            if node not in nodes:
                problems.append(f"{key(path + '.nodes')}: unknown node {node!r}; nodes are "
                                f"{', '.join(nodes)}")
                continue
            if (node, mp) in seen:
                problems.append(f"{key(path + '.mountpoint')}: {node} already mounts "
                                f"something at {mp}")
            seen.add((node, mp))
            mount = {"node": node, "fs_name": fs, "mountpoint": mp, "client": client,
                     "options": list(item.get("options") or []),
                     "force_unmount": boolean(item, "force_unmount", path + ".force_unmount",
                                              problems)}
            if client_id:
                mount["client_id"] = f"{client_id}-{node}"
            mounts.append(mount)
    return mounts
