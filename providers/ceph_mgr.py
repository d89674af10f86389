"""CephMgr: one manager daemon on one node (mgr id = node name). One mgr is active, the
others stand by; PG statistics (which pools wait on) need an active one. The mechanics are
shared with CephMds (providers/ceph_daemon.py)."""
from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, ReadResult, ResourceProvider, \
    UpdateResult

from providers import base, ceph_daemon, ceph_facts
from providers.ceph_cli import ceph_json, settled

# --- input schema -----------------------------------------------------------------------
# see providers/ceph_daemon.py: cluster_name, fsid, node, connection, ensure, timeout

KIND = "mgr"
REPLACES = ceph_daemon.REPLACES
UPDATES = ceph_daemon.UPDATES


def registered(node, cluster: str) -> list[str]:
    """Mgrs the cluster lists, while one of them is active (available)."""
    mgr = ceph_facts.mgr_state(ceph_json(node, cluster, "mgr", "dump"))
    return [m for m in [mgr["active"], *mgr["standbys"]] if m] if mgr["available"] else []


class CephMgrProvider(ResourceProvider):
    def check(self, _olds, news):
        return CheckResult(*ceph_daemon.check(news))

    def diff(self, _id, olds, news):
        return base.diff_result(olds, settled(olds, news), replaces=REPLACES, updates=UPDATES)

    def create(self, props):
        props = base.normalize(props)
        outs = ceph_daemon.converge(props, KIND, registered)
        return CreateResult(props["node"], {**props, **outs})

    def read(self, id_, props):
        props = base.normalize(props)
        found = ceph_daemon.observe(props, KIND, registered)
        return ReadResult(id_ if found else "", {**props, **found} if found else {})

    def update(self, _id, _olds, news):
        news = base.normalize(news)
        return UpdateResult({**news, **ceph_daemon.converge(news, KIND, registered)})

    def delete(self, _id, props):
        ceph_daemon.remove(base.normalize(props), KIND)


class CephMgr(pulumi.dynamic.Resource, module="cephkvm", name="CephMgr"):
    ensure: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephMgrProvider(), name, props, opts)
