"""CephMgr: one manager daemon on one node (mgr id = node name). One mgr is active, the
others stand by; PG statistics (which pools wait on) need an active one. The mechanics are
shared with CephMds (providers/ceph_daemon.py)."""

from __future__ import annotations

from typing import Optional

import pulumi

from providers import base, ceph_daemon, ceph_facts
from providers.ceph_cli import ceph, ceph_json

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py DaemonInputs, through providers/ceph_daemon.py

KIND = "mgr"
INPUTS = ceph_daemon.INPUTS  # check, diff, create, read, update, delete: DaemonProvider
REPLACES, UPDATES, STATE = ceph_daemon.REPLACES, ceph_daemon.UPDATES, ceph_daemon.STATE


def registered(node, cluster: str) -> list[str]:
    """Mgrs the cluster lists, while one of them is active (available)."""
    mgr = ceph_facts.mgr_state(ceph_json(node, cluster, "mgr", "dump"))
    return [m for m in [mgr["active"], *mgr["standbys"]] if m] if mgr["available"] else []


def hand_over(node, props: dict, stop) -> None:
    """The active mgr fails over to a standby at once (not after its beacon grace), then
    stops (it restarted as a standby)."""
    c, name = props["cluster_name"], props["node"]
    mgr = ceph_facts.mgr_state(ceph_json(node, c, "mgr", "dump"))
    if mgr["active"] != name:
        return stop()
    if not mgr["standbys"]:  # a restart of the only mgr: nothing to fail over to
        pulumi.log.warn(f"mgr.{name} restarts with no standby: PG statistics pause meanwhile")
        return stop()
    ceph(node, c, "mgr", "fail", name, change=True)
    base.wait_until(
        lambda: (
            (m := ceph_facts.mgr_state(ceph_json(node, c, "mgr", "dump")))["available"]
            and m["active"] != name
        ),
        timeout=props["timeout"],
        what=f"a standby mgr to take over from mgr.{name}",
    )
    stop()


class CephMgrProvider(ceph_daemon.DaemonProvider):
    kind = KIND
    registered = staticmethod(registered)
    hand_over = staticmethod(hand_over)


class CephMgr(pulumi.dynamic.Resource, module="cephkvm", name="CephMgr"):
    ensure: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephMgrProvider(), name, props, opts)
