"""CephMgr: one manager daemon on one node (mgr id = node name). One mgr is active, the
others stand by; PG statistics (which pools wait on) need an active one. The mechanics are
shared with CephMds (providers/ceph_daemon.py)."""
from __future__ import annotations

from typing import Optional

import pulumi

from providers import ceph_daemon, ceph_facts
from providers.ceph_cli import ceph_json

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py DaemonInputs, through providers/ceph_daemon.py

KIND = "mgr"
INPUTS = ceph_daemon.INPUTS  # check, diff, create, read, update, delete: DaemonProvider
REPLACES, UPDATES, STATE = ceph_daemon.REPLACES, ceph_daemon.UPDATES, ceph_daemon.STATE


def registered(node, cluster: str) -> list[str]:
    """Mgrs the cluster lists, while one of them is active (available)."""
    mgr = ceph_facts.mgr_state(ceph_json(node, cluster, "mgr", "dump"))
    return [m for m in [mgr["active"], *mgr["standbys"]] if m] if mgr["available"] else []


class CephMgrProvider(ceph_daemon.DaemonProvider):
    kind = KIND
    registered = staticmethod(registered)


class CephMgr(pulumi.dynamic.Resource, module="cephkvm", name="CephMgr"):
    ensure: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephMgrProvider(), name, props, opts)
