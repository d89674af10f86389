"""CephStack: the Ceph half of the runbook as one component.

    CephStack
    ├── CephCluster          fsid, keys, initial monmap, ceph.conf + admin keyring everywhere
    ├── CephMon per mon node                after the cluster (made in parallel)
    ├── CephConfig           `ceph config set`; after every mon: waits for their quorum
    ├── CephMgr, CephMds per node           after the quorum (CephConfig)
    ├── CephOsd per (node, device)          after the mgrs (`osd purge` is a mgr command)
    ├── CephPool per pool                   after every OSD (PG stats need a mgr too)
    └── CephFilesystem per filesystem       after its pools and every MDS
        └── CephFSMount per (node, mount)   after the filesystem
"""
from __future__ import annotations

from typing import Optional

import pulumi

from components.config import StackConfig
from providers.ceph_cluster import CephCluster
from providers.ceph_config import CephConfig
from providers.ceph_mds import CephMds
from providers.ceph_mgr import CephMgr
from providers.ceph_mon import CephMon
from providers.ceph_osd import CephOsd
from providers.ceph_pool import CephPool
from providers.cephfs_filesystem import CephFilesystem
from providers.cephfs_mount import CephFSMount


def _slug(path: str) -> str:
    return path.removeprefix("/dev/").strip("/").replace("/", "-") or "root"


class CephStack(pulumi.ComponentResource):
    def __init__(self, stack: StackConfig, nodes: dict,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cephkvm:index:CephStack", "ceph", None, opts)
        cfg = stack.ceph
        for warning in cfg.warnings:
            pulumi.log.warn(warning, resource=self)
        by_name = {n.name: n for n in stack.nodes}
        access = {name: prepared.access for name, prepared in nodes.items()}
        secret = ["nodes", "admin", "ssh_private_key"] if any(
            "ssh_private_key" in a for a in access.values()) else []
        common = {"cluster_name": cfg.cluster_name}
        preps = [prepared.prep for prepared in nodes.values()]

        self.cluster = CephCluster("ceph-cluster", {
            **common, "pin_fsid": cfg.fsid, "public_network": cfg.public_network,
            "cluster_network": cfg.cluster_network,
            "nodes": [{"name": n, "address": by_name[n].address, **access[n]} for n in nodes],
            "mons": list(cfg.mons), "allow_data_loss": cfg.allow_data_loss,
        }, pulumi.ResourceOptions(parent=self, depends_on=preps,
                                  additional_secret_outputs=secret))
        common["fsid"] = self.cluster.fsid
        admin = [access[n] for n in list(cfg.mons) + [n for n in nodes if n not in cfg.mons]]
        timeout = {"timeout": cfg.health_timeout}

        def per_node(cls, prefix, names, after, extra=lambda n: {}):
            return [cls(f"{prefix}-{n}", {**common, "node": n, **access[n], **timeout,
                                          **extra(n)},
                        pulumi.ResourceOptions(parent=self, depends_on=after,
                                               additional_secret_outputs=secret))
                    for n in names]

        self.mons = per_node(CephMon, "mon", cfg.mons, [self.cluster], lambda n: {
            "address": by_name[n].address, "allow_data_loss": cfg.allow_data_loss})
        self.config = CephConfig("ceph-config", {
            **common, "admin": admin, "mons": list(cfg.mons), "options": cfg.options,
            "allow_data_loss": cfg.allow_data_loss, **timeout,
        }, pulumi.ResourceOptions(parent=self, depends_on=self.mons,
                                  additional_secret_outputs=secret))
        self.mgrs = per_node(CephMgr, "mgr", cfg.mgrs, [self.config])
        self.mdss = per_node(CephMds, "mds", cfg.mdss, [self.config])

        self.osds = [CephOsd(f"osd-{node}-{_slug(device)}", {
            **common, "node": node, **access[node], "device": device,
            "method": cfg.osd_method, "wipe": cfg.wipe_devices,
            "allow_data_loss": cfg.allow_data_loss,
        }, pulumi.ResourceOptions(parent=self, depends_on=[self.config, *self.mgrs],
                                  additional_secret_outputs=secret))
            for node, device in cfg.osds]

        self.pools = {p["name"]: CephPool(f"pool-{p.get('key') or p['name']}", {
            **common, "admin": admin, **p,
        }, pulumi.ResourceOptions(parent=self, depends_on=[self.config, *self.mgrs,
                                                                 *self.osds],
                                  additional_secret_outputs=secret))
            for p in cfg.pools}

        self.filesystems = {}
        for fs in cfg.filesystems:
            pools = [self.pools[p] for p in [fs["metadata_pool"], fs["data_pool"],
                                             *fs["extra_data_pools"]]]
            self.filesystems[fs["name"]] = CephFilesystem(f"fs-{fs['name']}", {
                **common, "admin": admin, **fs, "timeout": cfg.health_timeout,
            }, pulumi.ResourceOptions(parent=self, depends_on=[*pools, *self.mdss],
                                      additional_secret_outputs=secret))

        self.mounts = []
        for m in cfg.mounts:
            fs = self.filesystems[m["fs_name"]]
            self.mounts.append((m, CephFSMount(
                f"mount-{m['node']}-{_slug(m['mountpoint'])}", {
                    **common, **m, **access[m["node"]], "mon_hosts": self.cluster.mon_hosts,
                }, pulumi.ResourceOptions(parent=fs, depends_on=[fs],
                                          additional_secret_outputs=secret))))
        self.register_outputs({"fsid": self.cluster.fsid})

    def outputs(self) -> dict:
        """What other infrastructure consumes (also through a StackReference)."""
        mounts: dict = {}
        for m, _ in self.mounts:
            mounts.setdefault(m["node"], {})[m["mountpoint"]] = m["fs_name"]
        return {
            "fsid": self.cluster.fsid,
            "monitors": self.cluster.mon_addresses,
            "mon_hosts": self.cluster.mon_hosts,
            "version": self.config.version,
            "health": self.config.health,
            "cephfs": list(self.filesystems),
            "mounts": mounts,
            "client_keys": pulumi.Output.secret(pulumi.Output.all(
                **{f"{m['node']}:{m['mountpoint']}": r.client_key for m, r in self.mounts})),
            "csi": {"clusterID": self.cluster.fsid, "monitors": self.cluster.mon_hosts},
        }
