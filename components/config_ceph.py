"""The rules of the Ceph part of the stack config that span values or sections: mons and
their addresses, OSDs from the nodes' disks, pool size against the hosts holding OSDs, the
pools' PGs against what the OSDs may hold, each filesystem's own pools, mounts on known
nodes. The shape of `cephkvm:ceph`, `pools`, `filesystems` and `mounts` is
providers/schema/ceph.py. Pure: reads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.ceph_pool import check_pool
from providers.schema.ceph import Ceph
from providers.schema.types import in_network, is_cidr, key, unique


@dataclass(frozen=True)
class CephConfig:
    """`settings` is the cephkvm:ceph section with its defaults resolved; its fields read as
    this object's own (`cfg.cluster_name`)."""

    settings: Ceph
    mons: tuple = ()
    mgrs: tuple = ()
    mdss: tuple = ()
    osds: tuple = ()  # (node name, device)
    pools: tuple = ()  # dicts in CephPool's input shape
    filesystems: tuple = ()  # dicts in CephFilesystem's input shape
    mounts: tuple = ()  # dicts: node, filesystem, mountpoint, client, options, ...
    warnings: tuple = ()

    def __getattr__(self, name):
        return getattr(self.settings, name)


def load(
    values: dict,
    raw: dict,
    nodes: tuple,
    paths: dict,
    public: str | None,
    problems: list,
    partial: bool = False,
):
    """The CephConfig, or None when the stack has no (valid) `cephkvm:ceph` section.
    `public`: the inventory's public_network, the default of ceph.public_network.
    `partial`: a node with a problem was left out, so hosts and OSDs are not counted."""
    if "ceph" not in raw:
        for name in ("pools", "filesystems", "mounts"):
            if raw.get(name):
                problems.append(
                    f"{key(name)}: needs a cephkvm:ceph section (public_network at least)"
                )
        return None
    if "ceph" not in values:
        return None  # its problems are listed
    before = len(problems)
    warnings: list = []
    settings = _settings(values["ceph"], public, problems)
    roles = {r: tuple(n.name for n in nodes if r in n.roles) for r in ("mon", "mgr", "mds")}
    _check_mons(roles["mon"], warnings, problems)
    _check_mon_addresses(nodes, paths, settings.public_network, problems)
    if settings.dashboard and not roles["mgr"]:
        problems.append(
            f"{key('ceph.dashboard')}: the dashboard is served by the mgrs; give a node the "
            "mgr role, or remove ceph.dashboard"
        )
    osds = _osds(nodes, paths, problems)
    if osds and not roles["mgr"]:
        problems.append(
            f"{key('nodes')}: OSDs need a mgr (PG statistics; an OSD's removal asks one): "
            "give a node the mgr role"
        )
    counted = None if partial else osds
    pools = _pools(values.get("pools", ()), counted, problems)
    _check_pgs(values.get("pools", ()), counted, settings.options, warnings, problems)
    filesystems = _filesystems(values.get("filesystems", ()), pools, roles["mds"], problems)
    mounts = _mounts(values.get("mounts", ()), filesystems, [n.name for n in nodes], problems)
    if len(problems) > before:
        return None
    return CephConfig(
        settings=settings,
        mons=roles["mon"],
        mgrs=roles["mgr"],
        mdss=roles["mds"],
        osds=tuple(osds),
        pools=tuple(pools.values()),
        filesystems=tuple(filesystems.values()),
        mounts=tuple(mounts),
        warnings=tuple(warnings),
    )


def _settings(ceph: Ceph, default_public: str | None, problems: list) -> Ceph:
    public = ceph.public_network or default_public
    if not public:
        problems.append(
            f"{key('ceph.public_network')}: set the CIDR the mons listen on, e.g. 10.204.10.0/24"
        )
    return ceph.model_copy(
        update={"public_network": public or "", "osd_method": ceph.osd_method or "lvm"}
    )


def _check_mons(mons: tuple, warnings: list, problems: list) -> None:
    if not mons:
        problems.append(
            f"{key('nodes')}: no node has the mon role; give it to 1, 3 or 5 "
            "nodes (roles: [mon, ...])"
        )
    elif len(mons) % 2 == 0:
        warnings.append(
            f"{key('nodes')}: {len(mons)} mons ({', '.join(mons)}) cannot "
            f"outvote a split; use {len(mons) + 1} or {len(mons) - 1}"
        )


def _check_mon_addresses(nodes: tuple, paths: dict, public: str, problems: list) -> None:
    """A mon binds to its address in the monmap: it must lie in public_network."""
    for node in nodes:
        if "mon" not in node.roles or not is_cidr(public):
            continue
        at = paths[node.name]
        field = "ceph_address" if node.ceph_address else "address"
        inside = in_network(node.public_address, public)
        if inside is None:
            problems.append(
                f"{key(f'{at}.{field}')}: {node.name} is a mon, so Ceph needs "
                f"its IP address; set {at}.ceph_address to its address in "
                f"{public}"
            )
        elif not inside:
            problems.append(
                f"{key(f'{at}.{field}')}: {node.public_address} is outside "
                f"cephkvm:ceph.public_network {public}, so its mon could not bind; "
                f"set {at}.ceph_address to {node.name}'s address in {public}"
            )


def _osds(nodes: tuple, paths: dict, problems: list) -> list:
    osds = []
    for node in nodes:
        if "osd" not in node.roles:
            continue
        seen = set()
        for device in node.disks:
            if device in seen:
                problems.append(
                    f"{key(paths[node.name] + '.disks')}: {device} is listed "
                    "twice; one OSD per device"
                )
            seen.add(device)
            osds.append((node.name, device))
    return osds


def _domains(osds: list, domain: str) -> int:
    return len({n for n, _ in osds}) if domain == "host" else len(osds)


def _pools(pools: tuple, osds: list | None, problems: list) -> dict:
    """osds None: a node was left out, so the hosts holding OSDs are not counted."""
    found = {}
    for i, pool in unique(pools, "pools", problems):
        path = f"pools[{i}]"
        props = pool.inputs()
        for failure in check_pool(dict(props)):
            problems.append(
                f"{key(path + '.' + _config_field(failure.property))}: {failure.reason}"
            )
        if osds is not None:
            _check_fits(pool, props, osds, path, problems)
        found[pool.name] = props
    return found


def _check_fits(pool, props: dict, osds: list, path: str, problems: list) -> None:
    """Each copy on its own failure domain: enough hosts (or OSDs) must hold OSDs."""
    if props["type"] == "erasure" and pool.erasure:
        k_m, domain = pool.erasure.k + pool.erasure.m, pool.erasure.failure_domain
        if k_m > _domains(osds, domain):
            problems.append(
                f"{key(path + '.erasure')}: k+m = {k_m} but only "
                f"{_domains(osds, domain)} {domain}(s) hold OSDs; lower k or m, add "
                "OSDs, or use failure_domain: osd"
            )
    elif isinstance(pool.size, int) and pool.size > _domains(osds, "host") and osds:
        problems.append(
            f"{key(path + '.size')}: {pool.size} copies but only "
            f"{_domains(osds, 'host')} host(s) hold OSDs; lower size or add "
            "OSDs on more hosts"
        )


# Ceph's defaults: the PG copies an OSD may hold before it refuses a new pool or pg_num,
# the PGs a pool without pg_num starts with, and the mgr's own pool (1 PG, 3 copies).
MAX_PG_PER_OSD = 250
DEFAULT_PG_NUM = 32
MGR_POOL_PGS = 3


def _check_pgs(
    pools: tuple, osds: list | None, options: dict, warnings: list, problems: list
) -> None:
    """What Ceph checks when it makes a pool (OSDMonitor's check_pg_num): all pools' PG
    copies within mon_max_pg_per_osd on each OSD (at least 3 counted). A pg_num that is no
    power of two Ceph takes, and warns about until it is one."""
    if not osds:  # none, or not counted
        return
    total = MGR_POOL_PGS
    for i, pool in enumerate(pools):
        if pool is None:  # its problems are listed
            continue
        copies = pool.erasure.k + pool.erasure.m if pool.erasure else pool.size or 3
        total += (pool.pg_num or DEFAULT_PG_NUM) * copies
        n = pool.pg_num
        if n and n & (n - 1) and _option(options, "mon_warn_on_pool_pg_num_not_power_of_two"):
            lower = 1 << (n.bit_length() - 1)
            warnings.append(
                f"{key(f'pools[{i}].pg_num')}: {n} is not a power of two; Ceph warns "
                f"(POOL_PG_NUM_NOT_POWER_OF_TWO) until it is: use {lower} or {lower * 2}"
            )
    limit = _option(options, "mon_max_pg_per_osd", MAX_PG_PER_OSD)
    counted = max(len(osds), 3)
    if isinstance(limit, int) and total > limit * counted:
        sized = [i for i, p in enumerate(pools) if p is not None]
        biggest = max(sized, key=lambda i: pools[i].pg_num or DEFAULT_PG_NUM)
        problems.append(
            f"{key('pools')}: {total} PG copies (pg_num times copies, every pool) on "
            f"{len(osds)} OSD(s) exceed Ceph's mon_max_pg_per_osd {limit} x {counted}; Ceph "
            f"would refuse the pool that crosses it. Lower pg_num (the largest: "
            f"{key(f'pools[{biggest}].pg_num')}), add OSDs, or raise mon_max_pg_per_osd "
            "in cephkvm:ceph.options"
        )


def _option(options: dict, name: str, default=True):
    """An option as cephkvm:ceph.options sets it (mon section first), typed like default."""
    for section in ("mon", "global"):
        value = (options or {}).get(section, {}).get(name)
        if value is None:
            continue
        if isinstance(default, bool):
            return str(value).lower() not in ("false", "0", "no", "off")
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    return default


def _config_field(provider_field: str) -> str:
    return {"ec_k": "erasure.k", "ec_m": "erasure.m"}.get(provider_field, provider_field)


def _filesystems(filesystems: tuple, pools: dict, mdss: tuple, problems: list) -> dict:
    found, used = {}, {}
    for i, fs in unique(filesystems, "filesystems", problems):
        path = f"filesystems[{i}]"
        named = [("metadata_pool", fs.metadata_pool), ("data_pool", fs.data_pool)] + [
            (f"extra_data_pools[{j}]", p) for j, p in enumerate(fs.extra_data_pools)
        ]
        for field_name, pool in named:
            _check_fs_pool(
                fs.name,
                f"{path}.{field_name}",
                pool,
                pools,
                used,
                problems,
                extra=field_name.startswith("extra"),
            )
        if not mdss:
            problems.append(f"{key(path)}: no node has the mds role; CephFS needs one")
        standby = (
            fs.standby_count if fs.standby_count is not None else min(1, max(len(mdss) - 1, 0))
        )
        found[fs.name] = {**fs.model_dump(mode="json"), "standby_count": standby}
    return found


def _check_fs_pool(
    fs: str, path: str, pool: str, pools: dict, used: dict, problems: list, extra: bool
) -> None:
    where = key(path)
    if pool not in pools:
        problems.append(f"{where}: {pool!r} is not a pool in cephkvm:pools")
        return
    if pool in used and used[pool] != fs:
        problems.append(
            f"{where}: pool {pool!r} is already used by filesystem "
            f"{used[pool]!r}; each filesystem needs its own pools"
        )
    used[pool] = fs
    erasure = pools[pool].get("type") == "erasure"
    if erasure and not extra:
        problems.append(
            f"{where}: {pool!r} is erasure-coded; CephFS wants a "
            "replicated pool here and the EC pool under extra_data_pools"
        )
    if erasure and not pools[pool].get("ec_overwrites"):
        problems.append(
            f"{key('pools')}: {pool!r} serves CephFS; set erasure.allow_ec_overwrites: true"
        )


def _mounts(mounts: tuple, filesystems: dict, names: list, problems: list) -> list:
    out, seen = [], set()
    for i, mount in enumerate(mounts):
        if mount is None:
            continue
        path = f"mounts[{i}]"
        if mount.filesystem not in filesystems:
            problems.append(
                f"{key(path + '.filesystem')}: {mount.filesystem!r} is not in cephkvm:filesystems"
            )
        for node in mount.nodes if mount.nodes is not None else names:
            if node not in names:
                problems.append(
                    f"{key(path + '.nodes')}: unknown node {node!r}; nodes are {', '.join(names)}"
                )
                continue
            if (node, mount.mountpoint) in seen:
                problems.append(
                    f"{key(path + '.mountpoint')}: {node} already mounts "
                    f"something at {mount.mountpoint}"
                )
            seen.add((node, mount.mountpoint))
            out.append(
                {
                    "node": node,
                    "fs_name": mount.filesystem,
                    "mountpoint": mount.mountpoint,
                    "client": mount.client,
                    "options": list(mount.options),
                    "force_unmount": mount.force_unmount,
                    **({"client_id": f"{mount.client_id}-{node}"} if mount.client_id else {}),
                }
            )
    return out
