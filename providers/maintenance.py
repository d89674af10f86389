"""Maintenance: the refusal in front of a node's maintenance (one per stack, while any node
is in maintenance: components/config_maintenance.py).

The daemons of a node in maintenance stop themselves (`ensure: maintenance` on CephMon,
CephMgr, CephMds, CephOsd) and its VMs migrate (their `node`); all of them depend on this
resource, so its create or update runs first and refuses, before anything moves, when the
rest of the cluster cannot take over: `ceph mon ok-to-stop` and `ceph osd ok-to-stop` for
every node in maintenance together, a mgr and enough MDS daemons left elsewhere, and free
memory on the nodes the VMs move to. A node leaving maintenance needs no check. It changes
nothing on any host.
"""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts
from providers.ceph_cli import admin_session, ceph_json, ok_to_stop
from providers.errors import Failure
from providers.schema.node import MaintenanceInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/node.py MaintenanceInputs (+ ssh_private_key?)
INPUTS = MaintenanceInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class MaintenanceProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        _refuse_unsafe(props, entering=[n["name"] for n in props["nodes"]])
        return CreateResult("maintenance", props)

    def read(self, id_, props):
        return ReadResult(id_, props)  # nothing of its own on any host

    def update(self, _id, olds, news):
        before = {n["name"] for n in olds.get("nodes", ())}
        entering = [n["name"] for n in news["nodes"] if n["name"] not in before]
        if entering:
            _refuse_unsafe(news, entering)
        return UpdateResult(news)

    def delete(self, _id, _props):
        pass  # the daemons start again through their own `ensure`


def _refuse_unsafe(props: dict, entering: list) -> None:
    stops = any(n[r] for n in props["nodes"] for r in ("mon", "mgr", "mds", "osd"))
    problems = _ceph_problems(props) if props["admin"] and stops else []
    problems += _room_problems(props)
    if problems:
        raise Failure(
            f"refusing maintenance of {', '.join(entering)}: "
            + "; ".join(problems)
            + ". Nothing was stopped or moved; take fewer "
            "nodes out at once, or free room, then run `pulumi up` again."
        )


# --- what Ceph says -------------------------------------------------------------------------


def _ceph_problems(props: dict) -> list[str]:
    node, c = admin_session(props), props["cluster_name"]
    down = props["nodes"]
    names = {n["name"] for n in down}
    problems = []
    mons = [n["name"] for n in down if n["mon"]]
    if mons:
        problems.append(ok_to_stop(node, c, "mon", mons))
    tree = ceph_facts.osds(ceph_json(node, c, "osd", "tree"))
    osds = [i for i, osd in sorted(tree.items()) if osd["host"] in names]
    if osds:
        problems.append(ok_to_stop(node, c, "osd", osds))
    hosts = {osd["host"] for osd in tree.values()}
    problems += [
        f"{n['name']} has the osd role but `ceph osd tree` has no host {n['name']} (CRUSH "
        "names hosts by their hostname; make the node's name its hostname)"
        for n in down
        if n["osd"] and n["name"] not in hosts
    ]
    mgr = ceph_facts.mgr_state(ceph_json(node, c, "mgr", "dump"))
    if any(n["mgr"] for n in down) and not [
        m for m in [mgr["active"], *mgr["standbys"]] if m and m not in names
    ]:
        problems.append("no mgr would be left running (start a standby mgr elsewhere)")
    dump = ceph_json(node, c, "fs", "dump")
    ranks = sum(fs["max_mds"] for fs in ceph_facts.filesystems(dump).values())
    left = [m for m in ceph_facts.mds_daemons(dump) if m not in names]
    if any(n["mds"] for n in down) and len(left) < ranks:
        problems.append(
            f"{len(left)} MDS would be left for {ranks} active rank(s) (no standby to take over)"
        )
    return [p for p in problems if p]


# --- room for the VMs -------------------------------------------------------------------------


def _room_problems(props: dict) -> list[str]:
    problems = []
    for access in props["targets"]:
        target, name = base.session(access), access["connection"]["name"]
        there = set(target.run(["virsh", "-c", "qemu:///system", "list", "--name"]).stdout.split())
        incoming = [m for m in props["moves"] if m["to"] == name and m["vm"] not in there]
        need = sum(m["memory_mib"] for m in incoming)
        free = _available_mib(target.run(["cat", "/proc/meminfo"]).stdout)
        if need > free:
            problems.append(
                f"{name} has {free} MiB available but "
                f"{', '.join(m['vm'] for m in incoming)} need {need} MiB"
            )
    return problems


def _available_mib(meminfo: str) -> int:
    """/proc/meminfo's MemAvailable, in MiB."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


class Maintenance(pulumi.dynamic.Resource, module="cephkvm", name="Maintenance"):
    def __init__(self, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(MaintenanceProvider(), "maintenance", props, opts)
