"""CephMds: one metadata server on one node (MDS id = node name). It holds no state of its
own (the filesystem's metadata lives in its pool), so deleting one needs no opt-in: a
standby takes over. Which MDS is active is the filesystem's business (CephFilesystem); the
mechanics are shared with CephMgr (providers/ceph_daemon.py)."""

from __future__ import annotations

from typing import Optional

import pulumi

from providers import base, ceph_daemon, ceph_facts
from providers.ceph_cli import ceph, ceph_json

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py DaemonInputs, through providers/ceph_daemon.py

KIND = "mds"
INPUTS = ceph_daemon.INPUTS  # check, diff, create, read, update, delete: DaemonProvider
REPLACES, UPDATES, STATE = ceph_daemon.REPLACES, ceph_daemon.UPDATES, ceph_daemon.STATE


def registered(node, cluster: str) -> list[str]:
    """MDS daemons the cluster lists, active or standby."""
    return sorted(ceph_facts.mds_daemons(ceph_json(node, cluster, "fs", "dump")))


def hand_over(node, props: dict, stop, alone: str | None = "restarts") -> None:
    """An active MDS stops first, then is marked failed (so a standby takes its rank at
    once, not after the beacon grace), and its rank is waited for. Failing it while it
    runs makes it respawn as a standby, which the mons may give the rank right back to
    (measured on the lab: the wait never ended)."""
    c, name = props["cluster_name"], props["node"]

    def actives():
        return [
            fs["active"] for fs in ceph_facts.filesystems(ceph_json(node, c, "fs", "dump")).values()
        ]

    if not any(name in active for active in actives()):
        return stop()
    dump = ceph_json(node, c, "fs", "dump")
    standby = ("up:standby", "up:standby-replay")
    if not [d for d, s in ceph_facts.mds_daemons(dump).items() if s in standby and d != name]:
        # Only a restart or a delete gets here without a standby (maintenance refuses it
        # first): the filesystem pauses until an MDS is back, as with any lone MDS.
        if alone:
            pulumi.log.warn(f"mds.{name} {alone} with no standby: CephFS pauses meanwhile")
        return stop()
    stop()
    ceph(node, c, "mds", "fail", name, change=True)
    base.wait_until(
        lambda: all(active and name not in active for active in actives()),
        timeout=props["timeout"],
        what=f"a standby MDS to take over from mds.{name}",
    )


class CephMdsProvider(ceph_daemon.DaemonProvider):
    kind = KIND
    registered = staticmethod(registered)
    hand_over = staticmethod(hand_over)


class CephMds(pulumi.dynamic.Resource, module="cephkvm", name="CephMds"):
    ensure: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephMdsProvider(), name, props, opts)
