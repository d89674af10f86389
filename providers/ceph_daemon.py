"""What CephMgr and CephMds share (their provider, DaemonProvider, lives here): a stateless
Ceph daemon on one node whose key comes from the running cluster. The key is made by
`ceph auth get-or-create` (which keeps an existing one, so a re-run after a crash gets the
same key) and written by ceph itself into the daemon's directory; the daemon is started
through providers.services and counts as up once the cluster lists it (`registered`, a fact
each resource module supplies).
"""

from __future__ import annotations

from typing import Callable

from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts, services
from providers.ceph_cli import (
    ceph,
    keyring_keys,
    mark_restarted,
    one_restart_at_a_time,
    restart_done,
    restart_pending,
    seen,
    wait_for_quorum,
)
from providers.schema.ceph import DaemonInputs
from providers.transport import CommandError

# --- input schema (both kinds) ----------------------------------------------------------
# providers/schema/ceph.py DaemonInputs (+ ssh_private_key?)
INPUTS = DaemonInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)

DAEMON_CAPS = {
    "mgr": ["mon", "allow profile mgr", "osd", "allow *", "mds", "allow *"],
    "mds": ["mon", "profile mds", "mgr", "profile mds", "mds", "allow *", "osd", "allow *"],
}

Registered = Callable[[object, str], list]  # (admin node, cluster) -> daemon names
# (node, props, stop): stop the daemon, its work moving to a standby
HandOver = Callable[..., None]  # (node, props, stop, alone=...): see ceph_mgr.hand_over


class DaemonProvider(base.Provider):
    """A subclass names its `kind`, the `registered` fact for that kind, how it hands its
    work to a standby before its node's maintenance stops it (`hand_over`) and may hold
    its removal back (`may_go`)."""

    INPUTS = INPUTS
    SETTLE = True
    kind: str
    registered: Registered
    hand_over: HandOver

    def create(self, props):
        outs = converge(props, self.node, self.kind, self.registered)
        return CreateResult(props["node"], {**props, **outs})

    def read(self, id_, props):
        found = observe(props, self.node, self.kind, self.registered)
        return ReadResult(id_ if found else "", {**props, **found} if found else {})

    def update(self, _id, olds, news):
        name = f"{self.kind}.{news['node']}"
        if news["ensure"] == "maintenance":
            return UpdateResult(
                {**news, **stop_for_maintenance(news, self.node, self.kind, self.hand_over)}
            )
        with one_restart_at_a_time(olds, news):
            if restart_pending(self.node, olds, news, name):
                stop_for_maintenance(news, self.node, self.kind, self.hand_over)
                mark_restarted(self.node, olds, news, name)
            outs = converge(news, self.node, self.kind, self.registered)
            restart_done(self.node, olds, news, name)
        return UpdateResult({**news, **outs})

    def delete(self, _id, props):
        self.may_go(self.node, props)
        remove(props, self.node, self.kind, self.hand_over)

    @staticmethod
    def may_go(node, props: dict) -> None:
        """Returns once the daemon may be removed (a kind's own rule); at once by default."""


def daemon(props: dict, kind: str) -> services.Daemon:
    return services.ceph_daemon(kind, props["node"], props["cluster_name"])


def data_dir(props: dict, kind: str) -> str:
    return f"/var/lib/ceph/{kind}/{props['cluster_name']}-{props['node']}"


def converge(props: dict, node, kind: str, registered: Registered) -> dict:
    """Key, daemon, then wait until the cluster lists it."""
    c, name = props["cluster_name"], props["node"]
    wait_for_quorum(node, c, props["timeout"])
    data, entity = data_dir(props, kind), f"{kind}.{name}"
    if not _holds_cluster_key(node, c, entity, data + "/keyring"):
        node.run(["install", "-d", "-o", "ceph", "-g", "ceph", "-m", "0750", data], change=True)
        ceph(
            node,
            c,
            "auth",
            "get-or-create",
            entity,
            *DAEMON_CAPS[kind],
            "-o",
            data + "/keyring",
            change=True,
        )
        node.run(["chown", "-R", "ceph:ceph", data], change=True)
    services.ensure_running(node, daemon(props, kind), services.has_systemd(node))
    base.wait_until(
        lambda: name in registered(node, c),
        timeout=props["timeout"],
        what=f"{kind}.{name} on {name} to register with the cluster",
        report=lambda: (
            f"Registered: {', '.join(registered(node, c)) or 'none'}. "
            f"See /var/log/ceph/{c}-{kind}.{name}.log on {name}."
        ),
    )
    return {"ensure": "up"}


def _holds_cluster_key(node, cluster: str, entity: str, path: str) -> bool:
    """The keyring holds the key the cluster has for entity. A keyring left by an earlier
    cluster on this node (a killed run, a destroy that did not finish) holds another key:
    the daemon would fail cephx, so it is written again, not adopted."""
    own = keyring_keys(node.get(path)).get(entity)
    if not own:
        return False
    got = ceph(node, cluster, "auth", "get", entity, "-f", "json", check=False)
    return got.exit_code == 0 and ceph_facts.auth_entity(got.stdout).get("key") == own


def observe(props: dict, node, kind: str, registered: Registered) -> dict | None:
    """None when the daemon's key is gone (it must be made again), else its ensure."""
    if not node.ok(["test", "-s", data_dir(props, kind) + "/keyring"]):
        return None
    running = services.is_running(node, daemon(props, kind), services.has_systemd(node))
    up = running and props["node"] in registered(node, props["cluster_name"])
    return {"ensure": seen(props["ensure"], running, up)}


def stop_for_maintenance(props: dict, node, kind: str, hand_over: HandOver) -> dict:
    """Stopped for its node's maintenance, or for a restart: a standby takes over first."""
    handed_over_and_stopped(props, node, kind, hand_over)
    return {"ensure": "maintenance"}


def handed_over_and_stopped(props: dict, node, kind: str, hand_over: HandOver, **how) -> None:
    """Stop the daemon, its work moving to a standby first when it runs; `how` goes to
    the kind's hand_over."""
    systemd = services.has_systemd(node)

    def stop():
        services.stop(node, daemon(props, kind), systemd)

    if services.is_running(node, daemon(props, kind), systemd):
        hand_over(node, props, stop, **how)
    else:
        stop()  # a killed run may have left its pid file


def remove(props: dict, node, kind: str, hand_over: HandOver) -> None:
    """Hand its work to a standby and stop it, drop its key from the cluster, remove its
    directory. The key may already be gone (a crashed delete); a cluster that no longer
    answers has no key to drop and no standby to hand over to."""
    try:
        handed_over_and_stopped(props, node, kind, hand_over, alone=None)
    except CommandError:  # the cluster is being taken down: nothing to hand over
        services.stop(node, daemon(props, kind), services.has_systemd(node))
    ceph(
        node,
        props["cluster_name"],
        "auth",
        "rm",
        f"{kind}.{props['node']}",
        change=True,
        check=False,
        timeout=60,
    )
    node.run(["rm", "-rf", data_dir(props, kind)], change=True)
