"""CephConf: what one node needs to talk to the cluster: ceph.conf, and the admin keyring
on nodes with a Ceph role (mon, mgr, mds, osd). A node with none (a KVM-only node, a CephFS
client) holds ceph.conf and its mount's own key, never the admin key.

One per node, so taking a node out of the stack takes the cluster's credentials off it:
delete removes ceph.conf, the admin keyring and the bootstrap-osd keyring, after every
daemon and mount of that node is gone (they depend on this resource).
"""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CheckFailure, CreateResult, ReadResult, UpdateResult

from providers import base
from providers.ceph_cli import keyring, keyring_keys
from providers.ceph_cluster import ADMIN_CAPS
from providers.schema.ceph import ConfInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py ConfInputs (+ ssh_private_key?)
# outputs: none beyond the inputs; read reports what the node holds
INPUTS = ConfInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class CephConfProvider(base.Provider):
    INPUTS = INPUTS
    SETTLE = True

    def rules(self, news, _olds):
        if news["admin"] is True and not news.get("admin_key"):
            return [CheckFailure("admin_key", "an admin node needs the admin key")]
        return []

    def create(self, props):
        _converge(props, self.node)
        return CreateResult(props["node"], props)

    def read(self, id_, props):
        """What the node holds: a missing or edited file shows as a change of conf or
        admin_key, which update writes back."""
        node = self.node
        key = keyring_keys(node.get(_admin_keyring(props))).get("client.admin")
        return ReadResult(
            id_,
            {**props, "conf": node.get(_conf(props)) or "", "admin": bool(key), "admin_key": key},
        )

    def update(self, _id, _olds, news):
        _converge(news, self.node)
        return UpdateResult(news)

    def delete(self, _id, props):
        c = props["cluster_name"]
        self.node.run(
            [
                "rm",
                "-f",
                _conf(props),
                _admin_keyring(props),
                f"/var/lib/ceph/bootstrap-osd/{c}.keyring",
            ],
            change=True,
        )


# --- converging -------------------------------------------------------------------------


def _conf(props: dict) -> str:
    return f"/etc/ceph/{props['cluster_name']}.conf"


def _admin_keyring(props: dict) -> str:
    return f"/etc/ceph/{props['cluster_name']}.client.admin.keyring"


def _converge(props: dict, node) -> None:
    if not node.ok(["test", "-d", "/etc/ceph"]):
        node.run(["install", "-d", "-m", "0755", "/etc/ceph"], change=True)
    node.put_if_changed(_conf(props), props["conf"])
    if props["admin"]:
        node.put_if_changed(
            _admin_keyring(props),
            keyring("client.admin", props["admin_key"], ADMIN_CAPS),
            mode="0600",
            secret=True,
        )
    elif node.ok(["test", "-e", _admin_keyring(props)]):
        node.run(["rm", "-f", _admin_keyring(props)], change=True)


class CephConf(pulumi.dynamic.Resource, module="cephkvm", name="CephConf"):
    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["admin_key"])
        )
        super().__init__(CephConfProvider(), name, props, opts)
