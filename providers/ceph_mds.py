"""CephMds: one metadata server on one node (MDS id = node name). It holds no state of its
own (the filesystem's metadata lives in its pool), so deleting one needs no opt-in: a
standby takes over. Which MDS is active is the filesystem's business (CephFilesystem); the
mechanics are shared with CephMgr (providers/ceph_daemon.py)."""
from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, ReadResult, ResourceProvider, \
    UpdateResult

from providers import base, ceph_daemon, ceph_facts
from providers.ceph_cli import ceph_json, settled

# --- input schema -----------------------------------------------------------------------
# see providers/ceph_daemon.py: cluster_name, fsid, node, connection, ensure, timeout

KIND = "mds"
REPLACES = ceph_daemon.REPLACES
UPDATES = ceph_daemon.UPDATES


def registered(node, cluster: str) -> list[str]:
    """MDS daemons the cluster lists, active or standby."""
    return sorted(ceph_facts.mds_daemons(ceph_json(node, cluster, "fs", "dump")))


class CephMdsProvider(ResourceProvider):
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


class CephMds(pulumi.dynamic.Resource, module="cephkvm", name="CephMds"):
    ensure: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephMdsProvider(), name, props, opts)
