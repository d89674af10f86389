"""CephMon: one monitor on one node (mon id = node name).

The first mons are made from the initial monmap CephCluster leaves on their nodes (one
monmap for all: Pacific needs that); a mon added to a running cluster is made from the
current monmap (`ceph mon getmap`) and joins by itself. Each create makes and starts only
its own mon and waits until that mon runs with itself in its monmap, never for a quorum:
the first mons are created in parallel (at most 4 dynamic operations at once) and a lone
mon cannot form one. Whatever needs a quorum (CephConfig, mgrs, MDS) waits for it. The
first mons elect with a short timeout until they meet (providers/mon_election.py).

Removing a mon takes it out of the monmap first; the last mon, or one whose removal loses
quorum, is refused unless the stack allows data loss. Monmap changes are made one at a
time: the dynamic provider serves all of a stack's resources from one process.
"""

from __future__ import annotations

import shlex
import threading
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts, mon_election, services
from providers.ceph_cli import (
    ceph,
    ceph_json,
    mark_restarted,
    one_restart_at_a_time,
    quorum,
    restart_asked,
    restart_done,
    restart_pending,
    seen,
    wait_for_quorum,
    wait_ok_to_stop,
)
from providers.ceph_cluster import (
    IDENTITY_DIR,
    bootstrap_keyring_path,
    identity_files,
    initial_monmap_path,
    mon_addrv,
)
from providers.errors import Failure
from providers.schema.ceph import MonInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py MonInputs (+ ssh_private_key?)
# outputs: mon_addr ([v2:..,v1:..])
INPUTS = MonInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
OUTPUTS = ("mon_addr",)

_MONMAP_CHANGES = threading.Lock()


class CephMonProvider(base.Provider):
    INPUTS = INPUTS
    SETTLE = True
    DELETE_BEFORE_REPLACE = True

    def create(self, props):
        return CreateResult(props["node"], {**props, **_converge(props, self.node)})

    def read(self, id_, props):
        node = self.node
        if not _made(props, node):
            return ReadResult("", {})
        running = services.is_running(node, _daemon(props), services.has_systemd(node))
        up = running and props["node"] in quorum(node, props["cluster_name"])
        return ReadResult(id_, {**props, "ensure": seen(props["ensure"], running, up)})

    def update(self, _id, olds, news):
        if news["ensure"] == "maintenance":
            return UpdateResult({**news, **_stop_for_maintenance(news, self.node)})
        name = f"mon.{news['node']}"
        with one_restart_at_a_time(olds, news):
            if restart_pending(self.node, olds, news, name):
                # the previous mon is back in the quorum first
                wait_ok_to_stop(
                    self.node, news["cluster_name"], "mon", [news["node"]], news["timeout"]
                )
                _stop_for_maintenance(news, self.node)
                mark_restarted(self.node, olds, news, name)
            outs = _converge(news, self.node)
            restart = restart_asked(olds, news)
            if restart or olds.get("ensure") == "maintenance":  # back in the quorum, then on
                wait_for_quorum(
                    self.node, news["cluster_name"], news["timeout"], mons=[news["node"]]
                )
            restart_done(self.node, olds, news, name)
        return UpdateResult({**news, **outs})

    def delete(self, _id, props):
        node = self.node
        with _MONMAP_CHANGES:
            _leave_monmap(props, node)
            services.stop(node, _daemon(props), services.has_systemd(node))
        # Without the initial monmap, a mon made here again joins the running cluster; the
        # rest of the identity goes too: a node that is no mon holds no mon. key.
        node.run(
            [
                "rm",
                "-rf",
                _mon_dir(props),
                _joined_monmap(props),
                *identity_files(props["cluster_name"]),
            ],
            change=True,
        )


# --- create -----------------------------------------------------------------------------


def _daemon(props: dict) -> services.Daemon:
    return services.ceph_daemon("mon", props["node"], props["cluster_name"])


def _mon_dir(props: dict) -> str:
    return f"/var/lib/ceph/mon/{props['cluster_name']}-{props['node']}"


def _joined_monmap(props: dict) -> str:
    return f"{IDENTITY_DIR}/{props['cluster_name']}-{props['node']}.monmap"


def _marker(props: dict) -> str:
    """Which cluster this node's mon store belongs to, kept in the store's own directory
    (identity files may be deleted; the store's owner must not be forgotten with them)."""
    return f"{_mon_dir(props)}/cephkvm_fsid"


def _converge(props: dict, node) -> dict:
    c = props["cluster_name"]
    if not _made(props, node):
        monmap = _monmap_for(props, node)
        _mkfs(props, node, monmap)
        if monmap == initial_monmap_path(c):  # one of a fresh cluster's first mons
            mon_election.start_helper(node, c, props["node"], props["timeout"])
    elif not node.ok(["test", "-e", _mon_dir(props) + "/done"]):
        _mark_done(props, node)
    services.ensure_running(node, _daemon(props), services.has_systemd(node))
    name = props["node"]
    base.wait_until(
        lambda: name in _own_monmap(props, node),
        timeout=props["timeout"],
        what=f"mon.{name} on {name} to run with itself in its monmap",
        report=lambda: (
            f"Its state: {_own_state(props, node)}. See "
            f"/var/log/ceph/{props['cluster_name']}-mon.{name}.log."
        ),
    )
    return {"ensure": "up", "mon_addr": mon_addrv(props["address"])}


def _stop_for_maintenance(props: dict, node) -> dict:
    """Stop it (its node is in maintenance; providers/maintenance.py checked that the others
    keep a quorum) and wait until the quorum stands without it."""
    name = props["node"]
    services.stop(node, _daemon(props), services.has_systemd(node))
    base.wait_until(
        lambda: (names := quorum(node, props["cluster_name"])) and name not in names,
        timeout=props["timeout"],
        what=f"a mon quorum without mon.{name}",
    )
    return {"ensure": "maintenance", "mon_addr": mon_addrv(props["address"])}


def _made(props: dict, node) -> bool:
    """mkfs completed: `done` is our marker, and the keyring in the data dir is the last
    thing `ceph-mon --mkfs` writes, so a crash between the two is not a reason to mkfs again.
    A store of another cluster is refused, never adopted."""
    data = _mon_dir(props)
    made = node.ok(["test", "-e", data + "/done"]) or node.ok(["test", "-s", data + "/keyring"])
    if not made:
        return False
    owner = (node.get(_marker(props)) or "").strip() or _store_fsid(props, node)
    if owner != props["fsid"]:
        raise Failure(
            f"{props['node']}: {data} holds a mon store that is not this cluster's "
            f"({'of cluster ' + owner if owner else 'of a cluster it does not say'}; this "
            f"cluster is {props['fsid']}). If it is left over, stop that mon and remove "
            f"{data}, then run `pulumi up` again. Nothing was changed."
        )
    return True


def _store_fsid(props: dict, node) -> str:
    """The fsid in the store's own monmap, for a store without our marker (a run killed
    between mkfs and the marker); '' when it cannot be read (a mon running on it)."""
    c, name = props["cluster_name"], props["node"]
    tmp = shlex.quote(f"/run/cephkvm-monmap-{name}")
    got = node.run(
        [
            "sh",
            "-c",
            f"ceph-mon --cluster {shlex.quote(c)} -i {shlex.quote(name)} "
            f"--extract-monmap {tmp} >/dev/null 2>&1 && monmaptool --print "
            f"{tmp}; rm -f {tmp}",
        ],
        check=False,
    )
    return next(
        (line.split()[1] for line in got.stdout.splitlines() if line.startswith("fsid ")), ""
    )


def _mark_done(props: dict, node) -> None:
    node.put(_marker(props), props["fsid"] + "\n", owner="ceph:ceph")
    node.run(
        [
            "install",
            "-o",
            "ceph",
            "-g",
            "ceph",
            "-m",
            "0644",
            "/dev/null",
            _mon_dir(props) + "/done",
        ],
        change=True,
    )


def _monmap_for(props: dict, node) -> str:
    """The initial monmap when this node holds it (one of the first mons), else the
    running cluster's current monmap."""
    c, name = props["cluster_name"], props["node"]
    if node.ok(["test", "-s", initial_monmap_path(c)]):
        return initial_monmap_path(c)
    try:
        wait_for_quorum(node, c, props["timeout"])
    except TimeoutError as err:
        raise Failure(
            f"{name}: mon.{name} is not one of the cluster's first mons, so it "
            "joins the running cluster, but no quorum answers. Start the "
            "cluster's mons (`pulumi up --refresh` restarts stopped ones), then "
            f"run `pulumi up` again. {err}"
        ) from None
    ceph(node, c, "mon", "getmap", "-o", _joined_monmap(props), change=True)
    return _joined_monmap(props)


def _mkfs(props: dict, node, monmap: str) -> None:
    c, data = props["cluster_name"], _mon_dir(props)
    # A store without `done` is from an interrupted mkfs: it holds nothing yet.
    node.run(["rm", "-rf", data], change=True)
    node.run(["install", "-d", "-o", "ceph", "-g", "ceph", "-m", "0750", data], change=True)
    node.run(["chown", "ceph:ceph", monmap], change=True)
    node.run(
        [
            "ceph-mon",
            "--cluster",
            c,
            "--mkfs",
            "-i",
            props["node"],
            "--monmap",
            monmap,
            "--keyring",
            bootstrap_keyring_path(c),
            "--setuser",
            "ceph",
            "--setgroup",
            "ceph",
        ],
        change=True,
    )
    _mark_done(props, node)


def _own_status(props: dict, node) -> dict:
    """The mon's own view through its admin socket: answers without a quorum."""
    result = ceph(
        node,
        props["cluster_name"],
        "daemon",
        f"mon.{props['node']}",
        "mon_status",
        check=False,
        timeout=30,
    )
    return ceph_facts.mon_status(result.stdout) if result.exit_code == 0 else {}


def _own_monmap(props: dict, node) -> list[str]:
    return _own_status(props, node).get("monmap", [])


def _own_state(props: dict, node) -> str:
    return _own_status(props, node).get("state") or "not answering on its admin socket"


# --- delete -----------------------------------------------------------------------------


def removal_problem(name: str, rest: list, in_quorum: list) -> str | None:
    """Why removing mon `name` would break the cluster, if it would: rest are the mons that
    stay in the monmap, in_quorum those of them in quorum now."""
    if not rest:
        return (
            f"mon.{name} is the cluster's last mon; without it the cluster is gone. Add "
            "another mon first, or, to destroy the cluster, set "
            "cephkvm:ceph.allow_data_loss: true"
        )
    if len(in_quorum) <= len(rest) // 2:
        return (
            f"only {len(in_quorum)} of the {len(rest)} mons that would remain "
            f"({', '.join(rest)}) are in quorum, so removing mon.{name} loses quorum. "
            "Bring the stopped mons back first (`pulumi up --refresh` restarts them), or "
            "add a mon before removing this one"
        )
    return None


def _leave_monmap(props: dict, node) -> None:
    c, name = props["cluster_name"], props["node"]
    allowed = props.get("allow_data_loss")
    names = quorum(node, c)
    if not names:
        if allowed:
            return  # no cluster answers: there is no monmap to leave
        raise Failure(
            f"refusing to remove mon.{name} on {name}: no mon quorum answers, so "
            "it cannot be taken out of the monmap. Start the mons (`pulumi up "
            "--refresh` restarts stopped ones) and try again, or set "
            "cephkvm:ceph.allow_data_loss: true to stop it anyway."
        )
    members = _monmap(node, c)
    if name not in members:
        return
    rest = [m for m in members if m != name]
    problem = removal_problem(name, rest, [m for m in names if m in rest])
    if problem and not allowed:
        raise Failure(f"refusing to remove mon.{name} on {name}: {problem}.")
    if not rest:
        return  # the last mon: the cluster goes with it (allowed)
    ceph(node, c, "mon", "remove", name, change=True)
    base.wait_until(
        lambda: name not in _monmap(node, c),
        timeout=props["timeout"],
        what=f"mon.{name} to leave the monmap",
    )


def _monmap(node, cluster: str) -> list[str]:
    return ceph_facts.monmap_names(ceph_json(node, cluster, "mon", "dump"))


class CephMon(pulumi.dynamic.Resource, module="cephkvm", name="CephMon"):
    mon_addr: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephMonProvider(), name, {**{k: None for k in OUTPUTS}, **props}, opts)
