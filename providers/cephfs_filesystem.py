"""CephFilesystem: `ceph fs new` over a metadata and a default data pool, extra (erasure
coded) data pools, max_mds and the standby count. Waits until an MDS is active and the
cluster reports no MDS, fs or PG health check; on timeout says what is unhealthy."""

from __future__ import annotations

import json
from typing import Optional

import pulumi
from pulumi.dynamic import CheckFailure, CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts
from providers.ceph_cli import admin_session, ceph, ceph_json, health
from providers.errors import Failure
from providers.schema.ceph import FilesystemInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py FilesystemInputs
INPUTS = FilesystemInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
OWN_CHECKS = ("MDS_", "FS_", "PG_", "TOO_FEW_PGS")


class CephFilesystemProvider(base.Provider):
    INPUTS = INPUTS
    SETTLE = True
    DELETE_BEFORE_REPLACE = True

    def rules(self, news, olds):
        olds = as_keys(olds, news)
        dropped = [
            p for p in olds.get("extra_data_pools") or [] if p not in news["extra_data_pools"]
        ]
        if dropped and news.get("allow_delete") is not True:
            return [
                CheckFailure(
                    "extra_data_pools",
                    f"taking {', '.join(dropped)} out of the "
                    "filesystem loses the files stored there; set allow_delete: "
                    "true on the filesystem first",
                )
            ]
        return []

    def diff(self, _id, olds, news):
        return super().diff(_id, as_keys(olds, news), news)

    def create(self, props):
        node = admin_session(props)
        c, name, p = props["cluster_name"], props["name"], named(props)
        if name not in _filesystems(props, node):
            ceph(node, c, "fs", "new", name, p["metadata_pool"], p["data_pool"], change=True)
        _converge(p, node)
        _layouts(p, node)
        return CreateResult(name, {**props})

    def read(self, id_, props):
        node = admin_session(props)
        fs = _filesystems(props, node).get(id_)
        if fs is None:
            return ReadResult("", {})
        names = _pool_names(props, node)
        data = [names.get(i, str(i)) for i in fs["data_pool_ids"]]
        keys = _inverse(props.get("pool_names"))
        meta = names.get(fs["metadata_pool_id"], "")
        return ReadResult(
            id_,
            {
                **props,
                "metadata_pool": keys.get(meta, meta),
                "data_pool": keys.get(data[0], data[0]) if data else "",
                "extra_data_pools": [keys.get(p, p) for p in data[1:]],
                "max_mds": fs["max_mds"],
                "standby_count": fs["standby_count"],
                "active_mds": fs["active"],
            },
        )

    def update(self, _id, olds, news):
        node = admin_session(news)
        _converge(named(news), node)
        if as_keys(olds, news).get("layouts") != news.get("layouts"):
            _layouts(named(news), node)
        return UpdateResult({**news})

    def delete(self, _id, props):
        if not props.get("allow_delete"):
            raise Failure(
                f"refusing to delete CephFS {props['name']}: every file in it would be lost. "
                "Set allow_delete: true on it in cephkvm:filesystems, run `pulumi up`, then "
                "try again."
            )
        node = admin_session(props)
        c, name = props["cluster_name"], props["name"]
        if name in _filesystems(props, node):
            ceph(node, c, "fs", "fail", name, change=True)
            ceph(node, c, "fs", "rm", name, "--yes-i-really-mean-it", change=True)


def pools_as(props: dict, mapping: dict) -> dict:
    """props with each pool it names (metadata, data, extra data, layouts) through mapping."""

    def one(pool):
        return mapping.get(pool, pool)

    return {
        **props,
        "metadata_pool": one(props.get("metadata_pool")),
        "data_pool": one(props.get("data_pool")),
        "extra_data_pools": [one(p) for p in props.get("extra_data_pools") or []],
        "layouts": {d: one(p) for d, p in (props.get("layouts") or {}).items()},
    }


def named(props: dict) -> dict:
    """props with pool names in place of keys: what `ceph` commands take."""
    return pools_as(props, props.get("pool_names") or {})


def keyed(props: dict, pool_names: dict) -> dict:
    """props (with pool names) with each renamed pool's key in place of its name."""
    return {**pools_as(props, _inverse(pool_names)), "pool_names": dict(pool_names)}


def as_keys(olds: dict, news: dict) -> dict:
    """olds with keys for pools. A state with an empty map holds names that were keys then,
    or (written before pools were held by key, after a rename) the renamed pools' current
    names, which news' map turns back into their keys."""
    if not olds or olds.get("pool_names"):
        return olds
    return pools_as(olds, _inverse(news.get("pool_names")))


def _inverse(pool_names) -> dict:
    return {name: key for key, name in (pool_names or {}).items()}


def _filesystems(props: dict, node) -> dict:
    return ceph_facts.filesystems(ceph_json(node, props["cluster_name"], "fs", "dump"))


def _pool_names(props: dict, node) -> dict:
    pools = ceph_facts.pools(ceph_json(node, props["cluster_name"], "osd", "pool", "ls", "detail"))
    return {p["pool_id"]: n for n, p in pools.items()}


def _refuse_if_used(props: dict, node, pool: str) -> None:
    """A data pool that still holds objects keeps files' data: never detach it."""
    if props.get("allow_delete") is not True:  # a pool attached by hand, found by a refresh
        raise Failure(
            f"refusing to take pool {pool} out of CephFS {props['name']}: the files stored "
            "there would be lost. Set allow_delete: true on it in cephkvm:filesystems, or "
            "list the pool in its extra_data_pools"
        )
    doc = json.loads(ceph_json(node, props["cluster_name"], "df", "detail") or "{}")
    stats = [p["stats"] for p in doc.get("pools", []) if p.get("name") == pool]
    if not stats:
        raise Failure(
            f"refusing to take pool {pool} out of CephFS {props['name']}: `ceph df` does not "
            "list it, so how much it holds is unknown. Run `pulumi up` again."
        )
    objects = stats[0].get("objects", 0)
    if objects:
        raise Failure(
            f"refusing to take pool {pool} out of CephFS {props['name']}: it still "
            f"holds {objects} objects, which would become unreachable. Move or "
            "delete the files stored there (layouts) first."
        )


def _converge(props: dict, node) -> None:
    c, name = props["cluster_name"], props["name"]
    fs = _filesystems(props, node)[name]
    extra_ids = fs["data_pool_ids"][1:]
    names = _pool_names(props, node) if extra_ids else {}  # a new fs has none: no listing
    have = [names.get(i) for i in extra_ids]
    for pool in props["extra_data_pools"]:
        if pool not in have:
            ceph(node, c, "fs", "add_data_pool", name, pool, change=True)
    for pool in have:
        if pool not in props["extra_data_pools"]:
            _refuse_if_used(props, node, pool)
            ceph(node, c, "fs", "rm_data_pool", name, pool, change=True)
    if fs["max_mds"] != props["max_mds"]:
        ceph(node, c, "fs", "set", name, "max_mds", props["max_mds"], change=True)
    if fs["standby_count"] != props["standby_count"]:
        ceph(
            node, c, "fs", "set", name, "standby_count_wanted", props["standby_count"], change=True
        )

    def active():
        return len(_filesystems(props, node)[name]["active"]) >= props["max_mds"]

    def healthy():  # this filesystem's part of the health: MDS, fs and PG checks
        checks = health(node, c)["checks"]
        return not [k for k in checks if k.startswith(OWN_CHECKS)]

    def report():
        return "Health: " + ceph_facts.health_report(health(node, c))

    base.wait_until(
        active,
        timeout=props["timeout"],
        what=f"{props['max_mds']} active MDS for {name}",
        report=report,
    )
    base.wait_until(
        healthy,
        timeout=props["timeout"],
        what=f"{name}'s MDS, fs and PG health checks to clear",
        report=report,
    )


def _layouts(props: dict, node) -> None:
    """Directory layouts through a short-lived admin ceph-fuse mount on the admin node: each
    directory is made and gets its pool, unless it already has it."""
    layouts = props.get("layouts") or {}
    if not layouts:
        return
    c, name = props["cluster_name"], props["name"]
    mnt = f"/run/cephkvm-layouts-{c}-{name}"
    node.run(["mkdir", "-p", mnt], change=True)
    node.run(
        ["ceph-fuse", "--cluster", c, "--id", "admin", f"--client_fs={name}", mnt],
        change=True,
        timeout=120,
    )
    try:
        for directory, pool in sorted(layouts.items()):
            path = mnt + "/" + directory.strip("/")
            node.run(["mkdir", "-p", path], change=True)
            node.run(["/usr/bin/python3", "-c", SET_LAYOUT, path, pool], change=True)
    finally:
        node.run(["umount", mnt], change=True, check=False)
        node.run(["rmdir", mnt], change=True, check=False)


# Sets ceph.dir.layout.pool unless the directory already has that pool (no setfattr needed).
SET_LAYOUT = """import os, sys
path, pool = sys.argv[1], sys.argv[2]
try:
    current = os.getxattr(path, "ceph.dir.layout.pool").decode()
except OSError:
    current = ""
if current != pool:
    os.setxattr(path, "ceph.dir.layout.pool", pool.encode())
"""


class CephFilesystem(pulumi.dynamic.Resource, module="cephkvm", name="CephFilesystem"):
    name: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephFilesystemProvider(), name, {"active_mds": None, **props}, opts)
