"""CephCluster: the cluster's identity: the fsid, the bootstrap keys (mon., client.admin,
client.bootstrap-osd), the initial monmap, and those files on the mon nodes. No daemon
belongs to it: each mon, mgr and MDS is its own resource (CephMon, CephMgr, CephMds);
ceph.conf and the admin keyring on each node are CephConf's; options are CephConfig's.

Identity lives in state. Only create makes an fsid or a key, and create runs only for a
resource without state; it picks up what a killed create of this same stack left on the
mons (the owner file says whose it is), and refuses anything another cluster left there.
Once the fsid is in state, update and read take fsid and keys from state alone: files on
the nodes that went missing are drift that update writes back, never a new cluster; a node
that cannot be read is an error, and a mon node that holds another fsid is refused.
"""

from __future__ import annotations

import base64
import re
import shlex
import time
import uuid
from typing import Optional

import pulumi
from pulumi.dynamic import CheckFailure, CreateResult, ReadResult, UpdateResult

from providers import base
from providers.ceph_cli import gen_key, keyring, keyring_keys
from providers.errors import Failure
from providers.schema.ceph import ClusterInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py ClusterInputs
# outputs: fsid, mon_addresses ([v2:..,v1:..] per mon), mon_hosts (ip:6789), conf (the
#          ceph.conf text CephConf writes), admin_key, mon_key, bootstrap_osd_key (secrets)
INPUTS = ClusterInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
SECRET_OUTPUTS = ("admin_key", "mon_key", "bootstrap_osd_key")
OUTPUTS = ("fsid", "mon_addresses", "mon_hosts", "conf", *SECRET_OUTPUTS)
ENTITIES = {
    "mon.": "mon_key",
    "client.admin": "admin_key",
    "client.bootstrap-osd": "bootstrap_osd_key",
}
# Not a `tmp` directory: anything may clean those.
IDENTITY_DIR = "/var/lib/ceph/cephkvm"

MAX_CLOCK_SKEW = 0.05  # seconds: Ceph's mon_clock_drift_allowed
MON_PORT = 3300  # msgr2, where the mons listen on the Ceph address
ADMIN_CAPS = {"mon": "allow *", "osd": "allow *", "mds": "allow *", "mgr": "allow *"}


class CephClusterProvider(base.Provider):
    INPUTS = INPUTS

    def rules(self, news, olds):
        failures = []
        names = {n.get("name") for n in news.get("nodes") or []}
        for i, node in enumerate(news.get("nodes") or []):
            failures += base.check_connection(node.get("connection"), f"nodes[{i}].connection")
        for name in news.get("mons") or []:
            if name not in names:
                failures.append(
                    CheckFailure(
                        "mons", f"{name!r} is not one of the nodes ({', '.join(sorted(names))})"
                    )
                )
        return failures + _mon_removal_failures(olds, news)

    def diff(self, _id, olds, news):
        # olds here are the state (check only sees the old inputs, without the fsid)
        _refuse_another_pin(olds, news)
        result = super().diff(_id, olds, news)
        result.delete_before_replace = bool(result.replaces)
        return result

    def create(self, props):
        nodes = _sessions(props)
        fsid, keys = _new_or_unfinished(props, nodes)
        _preflight(props, nodes, fsid)
        _write_identity(props, nodes, fsid, keys)
        _initial_monmap(props, nodes, fsid)
        return CreateResult(fsid, {**props, **_outputs(props, fsid, keys)})

    def read(self, id_, props):
        """Identity from state; a mon node whose files are missing or stale is left out of
        `mons`, so the diff shows an update that writes them back."""
        nodes = _sessions(props)
        fsid = props["fsid"]
        keys = _state_keys(props) or _keys_on_mons(props, nodes, fsid)
        intact = [m for m in props["mons"] if _holds_identity(props, nodes[m], fsid, keys)]
        return ReadResult(id_, {**props, "mons": intact})

    def update(self, _id, olds, news):
        # A mon added later gets the identity files but no initial monmap: it joins the
        # running cluster with the current monmap (CephMon).
        nodes = _sessions(news)
        fsid, keys = olds["fsid"], _state_keys(olds) or _keys_on_mons(news, nodes, olds["fsid"])
        _write_identity(news, nodes, fsid, keys)
        return UpdateResult({**news, **_outputs(news, fsid, keys)})

    def delete(self, _id, props):
        if not props.get("allow_data_loss"):
            raise Failure(
                f"refusing to delete Ceph cluster {props.get('fsid')}: that destroys every "
                "pool and file in it. To really delete it, set cephkvm:ceph.allow_data_loss "
                "to true, run `pulumi up`, then destroy again."
            )
        for node in _sessions(props).values():
            node.run(["rm", "-f", *_identity_files(props)], change=True)
            node.run(
                ["rmdir", "--ignore-fail-on-non-empty", IDENTITY_DIR], change=True, check=False
            )


def _mon_removal_failures(olds: dict, news: dict) -> list:
    """At preview: taking away half the mons or more in one run loses quorum (the new ones
    join only after the old ones are gone), so it is refused before any host is touched."""
    old, new = olds.get("mons") or [], news.get("mons") or []
    kept = [m for m in old if m in new]
    if not old or not new or len(kept) > len(old) // 2 or news.get("allow_data_loss"):
        return []
    gone = [m for m in old if m not in new]
    return [
        CheckFailure(
            "mons",
            f"removing mons {', '.join(gone)} in one run leaves "
            f"{len(kept)} of {len(old)}, which loses quorum; take the mon role "
            "away from one node per `pulumi up`",
        )
    ]


def _refuse_another_pin(olds: dict, news: dict) -> None:
    """Pinning the fsid the cluster has changes nothing; another one is refused at preview:
    a stack keeps its one cluster (a new one would mean new keys on every node)."""
    pin, fsid = news.get("pin_fsid"), olds.get("fsid")
    if pin and fsid and pin != fsid:
        raise Failure(
            f"cephkvm:ceph.fsid: this stack's cluster is {fsid}; it cannot become {pin}. "
            f"Set cephkvm:ceph.fsid to {fsid} or remove it; another cluster needs its own "
            "stack. Nothing was changed."
        )


# --- paths ------------------------------------------------------------------------------


def _sessions(props: dict) -> dict:
    return {n["name"]: base.session(n) for n in props["nodes"]}


def _address(props: dict, name: str) -> str:
    return next(n["address"] for n in props["nodes"] if n["name"] == name)


def owner_path(cluster: str) -> str:
    return f"{IDENTITY_DIR}/{cluster}.owner"


def fsid_path(cluster: str) -> str:
    return f"{IDENTITY_DIR}/{cluster}.fsid"


def bootstrap_keyring_path(cluster: str) -> str:
    return f"{IDENTITY_DIR}/{cluster}.bootstrap.keyring"


def initial_monmap_path(cluster: str) -> str:
    return f"{IDENTITY_DIR}/{cluster}.monmap"


def identity_files(cluster: str) -> list[str]:
    """What a mon node holds of the identity (CephMon's delete takes them away)."""
    return [
        owner_path(cluster),
        fsid_path(cluster),
        bootstrap_keyring_path(cluster),
        initial_monmap_path(cluster),
    ]


def _identity_files(props: dict) -> list[str]:
    c = props["cluster_name"]
    return identity_files(c) + [
        f"/etc/ceph/{c}.conf",
        f"/etc/ceph/{c}.client.admin.keyring",
        f"/var/lib/ceph/bootstrap-osd/{c}.keyring",
    ]


def mon_addrv(address: str) -> str:
    return f"[v2:{address}:{MON_PORT},v1:{address}:6789]"


# --- converging -------------------------------------------------------------------------


def _preflight(props: dict, nodes: dict, fsid: str) -> None:
    """Before the first change on any node: no node talks to another cluster already (its
    ceph.conf would be overwritten), the clocks agree (mons lose quorum over skew) and
    every node reaches every other at the address its mon will use."""
    problems = (
        _foreign_conf_problems(props, nodes, fsid)
        + _clock_problems(nodes)
        + _reach_problems(props, nodes)
    )
    if problems:
        raise Failure("Ceph preflight failed, nothing was changed:\n  " + "\n  ".join(problems))


def _conf_fsid(props: dict, node) -> str:
    """The fsid the node's ceph.conf names ('' without one)."""
    text = node.get(f"/etc/ceph/{props['cluster_name']}.conf") or ""
    held = re.search(r"^\s*fsid\s*=\s*(\S+)", text, re.MULTILINE)
    return held.group(1) if held else ""


def _conf_fsids(props: dict, nodes: dict) -> set:
    return {_conf_fsid(props, node) for node in nodes.values()} - {""}


def _foreign_conf_problems(props: dict, nodes: dict, fsid: str) -> list[str]:
    path, problems = f"/etc/ceph/{props['cluster_name']}.conf", []
    for name, node in nodes.items():
        held = _conf_fsid(props, node)
        if held and held != fsid:
            problems.append(
                f"{name}: {path} belongs to Ceph cluster {held}, not to this "
                f"stack's. If it is left over, remove it there (and any /var/lib/ceph/mon "
                f"store); to manage that cluster with this stack, set cephkvm:ceph.fsid: "
                f"{held} with its identity files ({IDENTITY_DIR}) on the mon nodes"
            )
    return problems


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
                problems.append(
                    f"clocks of {a} and {b} differ by {skew:.2f}s at least; "
                    "run NTP (chrony) on every node"
                )
    return problems


def _reach_problems(props: dict, nodes: dict) -> list[str]:
    """Each node reaches every other on its Ceph address, at the mons' port: a refused
    connection is an answer (nothing listens there before the mons start; sshd need not
    listen on the Ceph network), silence or no route is not."""
    problems = []
    for n in props["nodes"]:
        others = [(o["name"], o["address"]) for o in props["nodes"] if o["name"] != n["name"]]
        script = "; ".join(
            f"out=$(timeout 3 bash -c {shlex.quote(f'</dev/tcp/{addr}/{MON_PORT}')} 2>&1) || "
            f'case "$out" in *refused*) ;; *) echo {shlex.quote(name)} ;; esac'
            for name, addr in others
        )
        unreachable = nodes[n["name"]].run(["sh", "-c", script or "true"]).stdout.split()
        for other in unreachable:
            problems.append(
                f"{n['name']} cannot reach {other} at "
                f"{_address(props, other)}; fix the network or the node address"
            )
    return problems


def _held(node, path: str) -> str:
    return (node.get(path) or "").strip()


def _bootstrap_keyring(keys: dict) -> str:
    return (
        keyring("mon.", keys["mon."], {"mon": "allow *"})
        + keyring("client.admin", keys["client.admin"], ADMIN_CAPS)
        + keyring(
            "client.bootstrap-osd",
            keys["client.bootstrap-osd"],
            {"mon": "profile bootstrap-osd", "mgr": "allow r"},
        )
    )


def _new_or_unfinished(props: dict, nodes: dict) -> tuple[str, dict]:
    """A new identity, or the one a killed create of this stack left on the mons. Files of
    any other cluster (another stack, a hand-made cluster) are refused, unless the stack
    pins that very fsid to take the cluster over."""
    c, pin = props["cluster_name"], props.get("pin_fsid")
    held = {m: _held(nodes[m], fsid_path(c)) for m in props["mons"]}
    held = {m: f for m, f in held.items() if f}
    if not held:
        if pin and _conf_fsids(props, nodes) & {pin}:
            raise Failure(
                f"cannot take Ceph cluster {pin} over: the nodes run it, but its identity "
                f"files ({IDENTITY_DIR}) are on no mon node, and new keys would lock every "
                "node out of it. Restore that directory from a backup of a mon node, then "
                "run `pulumi up` again. Nothing was changed."
            )
        return pin or str(uuid.uuid4()), {e: gen_key() for e in ENTITIES}
    fsids = set(held.values())
    fsid = fsids.pop()
    where = ", ".join(sorted(held))
    if fsids:
        raise Failure(
            f"the mon nodes hold different Ceph clusters ({where}: "
            f"{', '.join(sorted(set(held.values())))}) in {IDENTITY_DIR}; remove "
            "the files of the ones that are left over, then run `pulumi up` again"
        )
    owners = {_held(nodes[m], owner_path(c)) for m in held}
    if pin and pin != fsid:
        raise Failure(
            f"{where} already hold Ceph cluster {fsid}, not the pinned fsid "
            f"{pin}; remove cephkvm:ceph.fsid, or clean {IDENTITY_DIR} on them"
        )
    if owners != {props["owner"]} and pin != fsid:
        raise Failure(
            f"{where} hold Ceph cluster {fsid}, made by "
            f"{', '.join(sorted(o or 'something else' for o in owners))}, not by "
            f"this stack ({props['owner']}). If it is left over, remove "
            f"{IDENTITY_DIR} and /var/lib/ceph/mon on those nodes; to take it "
            f"over, set cephkvm:ceph.fsid: {fsid}. Nothing was changed."
        )
    keys = keyring_keys(nodes[sorted(held)[0]].get(bootstrap_keyring_path(c)))
    if set(keys) != set(ENTITIES):  # killed before the keyring was written
        keys = {e: gen_key() for e in ENTITIES}
    return fsid, keys


def _state_keys(props: dict) -> dict:
    keys = {e: props.get(field) for e, field in ENTITIES.items()}
    return keys if all(keys.values()) else {}


def _keys_on_mons(props: dict, nodes: dict, fsid: str) -> dict:
    """Keys for a state written before they were kept there: from a mon holding this fsid."""
    c = props["cluster_name"]
    for m in props["mons"]:
        if _held(nodes[m], fsid_path(c)) == fsid:
            keys = keyring_keys(nodes[m].get(bootstrap_keyring_path(c)))
            if set(keys) == set(ENTITIES):
                return keys
    raise Failure(
        f"the state of Ceph cluster {fsid} holds no keys and no mon node has "
        "them; restore /var/lib/ceph/cephkvm from a backup of a mon node"
    )


def _check_fsid(props: dict, node, fsid: str) -> str:
    """The fsid on node ('' when it holds none); another cluster's is refused."""
    held = _held(node, fsid_path(props["cluster_name"]))
    if held and held != fsid:
        raise Failure(
            f"{node.name} holds Ceph cluster {held} in {IDENTITY_DIR}, but this "
            f"stack's cluster is {fsid}. If {node.name} was reinstalled or "
            "belongs to another cluster, take it out of this stack's mons, or "
            f"remove {IDENTITY_DIR} there so it gets this cluster's identity."
        )
    return held


def _holds_identity(props: dict, node, fsid: str, keys: dict) -> bool:
    c, owner = props["cluster_name"], props.get("owner")
    return (
        _check_fsid(props, node, fsid) == fsid
        and (not owner or _held(node, owner_path(c)) == owner)
        and keyring_keys(node.get(bootstrap_keyring_path(c))) == keys
    )


def _write_identity(props: dict, nodes: dict, fsid: str, keys: dict) -> None:
    """Owner, then fsid, then keys on every mon node: a keyring is only ever read beside
    the fsid it belongs to."""
    c = props["cluster_name"]
    for name in props["mons"]:
        node = nodes[name]
        _check_fsid(props, node, fsid)
        if not node.ok(["test", "-d", IDENTITY_DIR]):
            node.run(["install", "-d", "-m", "0755", IDENTITY_DIR], change=True)
        node.put_if_changed(owner_path(c), props["owner"] + "\n")
        node.put_if_changed(fsid_path(c), fsid + "\n", owner="ceph:ceph")
        node.put_if_changed(
            bootstrap_keyring_path(c),
            _bootstrap_keyring(keys),
            mode="0600",
            owner="ceph:ceph",
            secret=True,
        )


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
        first.run(
            [
                "sh",
                "-c",
                f"{shlex.join(argv)} {shlex.quote(path)}.new && "
                f"mv {shlex.quote(path)}.new {shlex.quote(path)}",
            ],
            change=True,
        )
    for name in props["mons"][1:]:
        if not nodes[name].ok(["test", "-s", path]):
            data = first.run(["base64", "-w0", path]).stdout  # binary: carried as base64
            nodes[name].put(path, base64.b64decode(data), mode="0644", owner="ceph:ceph")


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
        "conf": render_conf(props, fsid),
        **{field: keys[e] for e, field in ENTITIES.items()},
    }


class CephCluster(pulumi.dynamic.Resource, module="cephkvm", name="CephCluster"):
    fsid: pulumi.Output[str]
    mon_addresses: pulumi.Output[list]
    mon_hosts: pulumi.Output[list]
    conf: pulumi.Output[str]
    admin_key: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_OUTPUTS))
        )
        super().__init__(CephClusterProvider(), name, {**{k: None for k in OUTPUTS}, **props}, opts)
