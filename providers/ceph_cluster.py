"""CephCluster: the cluster's identity and what every node needs to talk to it: the fsid,
the bootstrap keys (mon., client.admin, client.bootstrap-osd), the initial monmap, and
ceph.conf + the admin keyring on every node. No daemon belongs to it: each mon, mgr and MDS
is its own resource (CephMon, CephMgr, CephMds), options are CephConfig's (they need a
quorum, which exists only after the mons).

Crash safety: the fsid is written to the mon nodes before the keys, and both are reused
from any mon node that has them; the initial monmap is made once on the first mon and
copied byte for byte, so a re-run after a kill at any step converges on the same fsid.
State written before the daemons were split out of this resource is not migrated: no
stack in production holds it.
"""
from __future__ import annotations

import base64
import shlex
import time
import uuid
from typing import Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, ReadResult, \
    ResourceProvider, UpdateResult

from providers import base
from providers.ceph_cli import gen_key, keyring, keyring_keys, node_session, put_if_changed

# --- input schema -----------------------------------------------------------------------
# cluster_name     str        "ceph"
# pin_fsid         str?       use this fsid instead of generating one
# public_network   str        CIDR the mons and clients use
# cluster_network  str?       CIDR for OSD replication
# nodes            list[dict] {name, address, connection, ssh_private_key?}: every node
#                             gets ceph.conf + the admin keyring
# mons             list[str]  node names running a mon (mon id = node name): ceph.conf's
#                             mon_host, and the initial monmap when the cluster is created
# allow_data_loss  bool       delete is refused unless true
# outputs: fsid, mon_addresses ([v2:..,v1:..] per mon), mon_hosts (ip:6789), admin_key
#          (secret)

REPLACES = ("cluster_name", "pin_fsid")
UPDATES = ("public_network", "cluster_network", "nodes", "mons", "allow_data_loss")
OUTPUTS = ("fsid", "mon_addresses", "mon_hosts", "admin_key")

MAX_CLOCK_SKEW = 0.05  # seconds: Ceph's mon_clock_drift_allowed
ADMIN_CAPS = {"mon": "allow *", "osd": "allow *", "mds": "allow *", "mgr": "allow *"}


class CephClusterProvider(ResourceProvider):
    def check(self, _olds, news):
        news = base.normalize(news)
        failures = []
        names = {n.get("name") for n in news.get("nodes") or []}
        for i, node in enumerate(news.get("nodes") or []):
            failures += base.check_connection(node.get("connection"), f"nodes[{i}].connection")
        for name in news.get("mons") or []:
            if name not in names:
                failures.append(CheckFailure("mons", f"{name!r} is not one of the nodes "
                                                     f"({', '.join(sorted(names))})"))
        if not news.get("mons"):
            failures.append(CheckFailure("mons", "at least one node needs the mon role"))
        if not news.get("public_network"):
            failures.append(CheckFailure("public_network", "set the CIDR mons listen on"))
        news.setdefault("cluster_name", "ceph")
        return CheckResult(news, failures)

    def diff(self, _id, olds, news):
        return base.diff_result(olds, news, replaces=REPLACES, updates=UPDATES)

    def create(self, props):
        props = base.normalize(props)
        nodes = _sessions(props)
        _preflight(props, nodes)
        fsid, keys = _identity(props, nodes)
        _initial_monmap(props, nodes, fsid)
        _distribute(props, nodes, fsid, keys)
        return CreateResult(fsid, {**props, **_outputs(props, fsid, keys)})

    def read(self, id_, props):
        props = base.normalize(props)
        nodes = _sessions(props)
        fsid = next((f for f in (_held_fsid(props, nodes[m]) for m in props["mons"]) if f), "")
        if not fsid:
            return ReadResult("", {})
        return ReadResult(id_, {**props, "fsid": fsid})

    def update(self, _id, _olds, news):
        # A mon added later gets the identity files but no initial monmap: it joins the
        # running cluster with the current monmap (CephMon).
        news = base.normalize(news)
        nodes = _sessions(news)
        fsid, keys = _identity(news, nodes)
        _distribute(news, nodes, fsid, keys)
        return UpdateResult({**news, **_outputs(news, fsid, keys)})

    def delete(self, _id, props):
        props = base.normalize(props)
        if not props.get("allow_data_loss"):
            raise Exception(
                f"refusing to delete Ceph cluster {props.get('fsid')}: that destroys every "
                "pool and file in it. To really delete it, set cephkvm:ceph.allow_data_loss "
                "to true, run `pulumi up`, then destroy again.")
        for node in _sessions(props).values():
            node.run(["rm", "-f", *_identity_files(props)], change=True)


# --- paths ------------------------------------------------------------------------------


def _sessions(props: dict) -> dict:
    return {n["name"]: node_session(n) for n in props["nodes"]}


def _address(props: dict, name: str) -> str:
    return next(n["address"] for n in props["nodes"] if n["name"] == name)


def fsid_path(cluster: str) -> str:
    return f"/var/lib/ceph/tmp/{cluster}.fsid"


def bootstrap_keyring_path(cluster: str) -> str:
    return f"/var/lib/ceph/tmp/{cluster}.bootstrap.keyring"


def initial_monmap_path(cluster: str) -> str:
    return f"/var/lib/ceph/tmp/{cluster}.monmap"


def _conf_path(props: dict) -> str:
    return f"/etc/ceph/{props['cluster_name']}.conf"


def _admin_keyring_path(props: dict) -> str:
    return f"/etc/ceph/{props['cluster_name']}.client.admin.keyring"


def _identity_files(props: dict) -> list[str]:
    c = props["cluster_name"]
    return [_conf_path(props), _admin_keyring_path(props), fsid_path(c),
            bootstrap_keyring_path(c), initial_monmap_path(c),
            f"/var/lib/ceph/bootstrap-osd/{c}.keyring"]


def mon_addrv(address: str) -> str:
    return f"[v2:{address}:3300,v1:{address}:6789]"


# --- converging -------------------------------------------------------------------------


def _preflight(props: dict, nodes: dict) -> None:
    """Before the first change on any node: the clocks agree (mons lose quorum over skew)
    and every node reaches every other at the address its mon will use."""
    problems = _clock_problems(nodes) + _reach_problems(props, nodes)
    if problems:
        raise Exception("Ceph preflight failed, nothing was changed:\n  " +
                        "\n  ".join(problems))


def _clock_problems(nodes: dict) -> list[str]:
    clocks, problems = {}, []
    for name, node in nodes.items():
        before = time.time()
        remote = float(node.run(["date", "+%s.%N"]).stdout.strip())
        after = time.time()
        clocks[name] = (remote - (before + after) / 2, (after - before) / 2)
    for a, (off_a, err_a) in clocks.items():
        for b, (off_b, err_b) in clocks.items():
            skew = abs(off_a - off_b) - err_a - err_b
            if a < b and skew > MAX_CLOCK_SKEW:
                problems.append(f"clocks of {a} and {b} differ by {skew:.2f}s at least; "
                                "run NTP (chrony) on every node")
    return problems


def _reach_problems(props: dict, nodes: dict) -> list[str]:
    problems = []
    for n in props["nodes"]:
        others = [(o["name"], o["address"], o["connection"].get("port", 22))
                  for o in props["nodes"] if o["name"] != n["name"]]
        script = "; ".join(
            f"timeout 3 bash -c {shlex.quote(f'</dev/tcp/{addr}/{port}')} 2>/dev/null || "
            f"echo {shlex.quote(name)}" for name, addr, port in others)
        unreachable = nodes[n["name"]].run(["sh", "-c", script or "true"]).stdout.split()
        for other in unreachable:
            problems.append(f"{n['name']} cannot reach {other} at "
                            f"{_address(props, other)}; fix the network or the node address")
    return problems


def _held_fsid(props: dict, node) -> str:
    return (node.get(fsid_path(props["cluster_name"])) or "").strip()


def _identity(props: dict, nodes: dict) -> tuple[str, dict]:
    """The cluster's fsid and bootstrap keys: reused from any mon node that has them
    (a crashed or earlier run), created only when none has them; then on every mon node."""
    c, fsid, keys = props["cluster_name"], "", {}
    for name in props["mons"]:
        fsid = _held_fsid(props, nodes[name])
        if fsid:
            keys = keyring_keys(nodes[name].get(bootstrap_keyring_path(c)))
            break
    if fsid and props.get("pin_fsid") and fsid != props["pin_fsid"]:
        raise Exception(f"the mons already hold cluster {fsid}, not the pinned fsid "
                        f"{props['pin_fsid']}; remove pin_fsid or clean the nodes")
    fsid = fsid or props.get("pin_fsid") or str(uuid.uuid4())
    if set(keys) != {"mon.", "client.admin", "client.bootstrap-osd"}:
        keys = {"mon.": gen_key(), "client.admin": gen_key(), "client.bootstrap-osd": gen_key()}
    text = (keyring("mon.", keys["mon."], {"mon": "allow *"})
            + keyring("client.admin", keys["client.admin"], ADMIN_CAPS)
            + keyring("client.bootstrap-osd", keys["client.bootstrap-osd"],
                      {"mon": "profile bootstrap-osd", "mgr": "allow r"}))
    # fsid before keys: a keyring without an fsid beside it is regenerated, never used.
    for name in props["mons"]:
        put_if_changed(nodes[name], fsid_path(c), fsid + "\n", owner="ceph:ceph")
        put_if_changed(nodes[name], bootstrap_keyring_path(c), text, mode="0600",
                       owner="ceph:ceph", secret=True)
    return fsid, keys


def _initial_monmap(props: dict, nodes: dict, fsid: str) -> None:
    """The monmap the first mons are made from: created once on the first mon and copied
    byte for byte to the others (mons made from mon_host alone, or from monmaps made
    separately, trip Pacific's ConnectionTracker rank assert)."""
    path = initial_monmap_path(props["cluster_name"])
    first = nodes[props["mons"][0]]
    if not first.ok(["test", "-s", path]):
        argv = ["monmaptool", "--create", "--fsid", fsid]
        for mon in props["mons"]:
            argv += ["--addv", mon, mon_addrv(_address(props, mon))]
        first.run(["sh", "-c", f"{shlex.join(argv)} {shlex.quote(path)}.new && "
                                f"mv {shlex.quote(path)}.new {shlex.quote(path)}"], change=True)
    for name in props["mons"][1:]:
        if not nodes[name].ok(["test", "-s", path]):
            data = first.run(["base64", "-w0", path]).stdout  # binary: carried as base64
            nodes[name].put(path, base64.b64decode(data), mode="0644", owner="ceph:ceph")


def _distribute(props: dict, nodes: dict, fsid: str, keys: dict) -> None:
    for node in nodes.values():
        put_if_changed(node, _conf_path(props), render_conf(props, fsid))
        put_if_changed(node, _admin_keyring_path(props),
                       keyring("client.admin", keys["client.admin"], ADMIN_CAPS),
                       mode="0600", secret=True)


def render_conf(props: dict, fsid: str) -> str:
    mons = props["mons"]
    lines = [
        "# Written by cephkvm (CephCluster); changes here are overwritten.",
        "[global]",
        f"fsid = {fsid}",
        f"mon_initial_members = {', '.join(mons)}",
        f"mon_host = {' '.join(mon_addrv(_address(props, m)) for m in mons)}",
        f"public_network = {props['public_network']}",
    ]
    if props.get("cluster_network"):
        lines.append(f"cluster_network = {props['cluster_network']}")
    lines += [
        "auth_cluster_required = cephx",
        "auth_service_required = cephx",
        "auth_client_required = cephx",
        # Ceph writes no pid file by default; the service manager finds daemons by it.
        "pid_file = /run/ceph/$cluster-$name.pid",
    ]
    return "\n".join(lines) + "\n"


def _outputs(props: dict, fsid: str, keys: dict) -> dict:
    return {
        "fsid": fsid,
        "mon_addresses": [mon_addrv(_address(props, m)) for m in props["mons"]],
        "mon_hosts": [f"{_address(props, m)}:6789" for m in props["mons"]],
        "admin_key": keys["client.admin"],
    }


class CephCluster(pulumi.dynamic.Resource, module="cephkvm", name="CephCluster"):
    fsid: pulumi.Output[str]
    mon_addresses: pulumi.Output[list]
    mon_hosts: pulumi.Output[list]
    admin_key: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["admin_key"]))
        super().__init__(CephClusterProvider(), name, {**{k: None for k in OUTPUTS}, **props},
                         opts)
