"""CephStack: the Ceph half of the runbook as one component.

    CephStack
    ├── CephCluster          mons, mgrs, MDS daemons, ceph.conf + admin keyring everywhere
    ├── CephOsd per (node, device)          after the cluster
    ├── CephPool per pool                   after every OSD (PGs need them to be clean)
    └── CephFilesystem per filesystem       after its pools
        └── CephFSMount per (node, mount)   after the filesystem
"""
from __future__ import annotations

from typing import Optional

import pulumi

from components.config import StackConfig
from providers.ceph_cluster import CephCluster
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
            "mons": list(cfg.mons), "mgrs": list(cfg.mgrs), "mdss": list(cfg.mdss),
            "options": cfg.options, "allow_data_loss": cfg.allow_data_loss,
            "health_timeout": cfg.health_timeout,
        }, pulumi.ResourceOptions(parent=self, depends_on=preps,
                                  additional_secret_outputs=secret))
        common["fsid"] = self.cluster.fsid
        admin = [access[n] for n in list(cfg.mons) + [n for n in nodes if n not in cfg.mons]]

        self.osds = [CephOsd(f"osd-{node}-{_slug(device)}", {
            **common, "node": node, **access[node], "device": device,
            "method": cfg.osd_method, "wipe": cfg.wipe_devices,
            "allow_data_loss": cfg.allow_data_loss,
        }, pulumi.ResourceOptions(parent=self, depends_on=[self.cluster],
                                  additional_secret_outputs=secret))
            for node, device in cfg.osds]

        self.pools = {p["name"]: CephPool(f"pool-{p.get('key') or p['name']}", {
            **common, "admin": admin, **p,
        }, pulumi.ResourceOptions(parent=self, depends_on=[self.cluster, *self.osds],
                                  additional_secret_outputs=secret))
            for p in cfg.pools}

        self.filesystems = {}
        for fs in cfg.filesystems:
            pools = [self.pools[p] for p in [fs["metadata_pool"], fs["data_pool"],
                                             *fs["extra_data_pools"]]]
            self.filesystems[fs["name"]] = CephFilesystem(f"fs-{fs['name']}", {
                **common, "admin": admin, **fs, "timeout": cfg.health_timeout,
            }, pulumi.ResourceOptions(parent=self, depends_on=pools,
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
            "version": self.cluster.version,
            "health": self.cluster.health,
            "cephfs": list(self.filesystems),
            "mounts": mounts,
            "client_keys": pulumi.Output.secret(pulumi.Output.all(
                **{f"{m['node']}:{m['mountpoint']}": r.client_key for m, r in self.mounts})),
            "csi": {"clusterID": self.cluster.fsid, "monitors": self.cluster.mon_hosts},
        }
