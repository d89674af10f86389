"""CephStack: the Ceph half of the runbook as one component.

CephStack
├── CephCluster          fsid, keys, initial monmap (identity files on the mon nodes)
├── CephConf per node    ceph.conf; the admin keyring on nodes with a Ceph role; after the
│                        node's bridges (everything Ceph on a node comes after its conf)
├── CephMon per mon node                after the cluster and its node's conf
├── CephConfig           `ceph config set`; after every mon: waits for their quorum
├── CephMgr, CephMds per node           after the quorum (CephConfig); one mgr first, the
│                                       standbys after their node's OSDs (all first when
│                                       the mgrs and the OSDs restart)
├── CephDashboard        the mgrs' web UI (ceph.dashboard); after every mgr
├── CephOsd per (node, device)          after the quorum (the last mgr's delete waits for them)
├── CephPool per pool                   after every OSD and the first mgr (PG states)
└── CephFilesystem per filesystem       after its pools and every MDS
    └── CephFSMount per (node, mount)   after the filesystem
"""

from __future__ import annotations

from typing import Optional

import pulumi

from components import ceph_restart, maintenance
from components.config import StackConfig
from providers.ceph_cluster import CephCluster
from providers.ceph_conf import CephConf
from providers.ceph_config import CephConfig
from providers.ceph_dashboard import SECRET_OUTPUTS, CephDashboard
from providers.ceph_mds import CephMds
from providers.ceph_mgr import CephMgr
from providers.ceph_mon import CephMon
from providers.ceph_osd import CephOsd
from providers.ceph_pool import CephPool
from providers.cephfs_filesystem import CephFilesystem, keyed
from providers.cephfs_mount import CephFSMount


ADMIN_NODES = 5


def _slug(path: str) -> str:
    return path.removeprefix("/dev/").strip("/").replace("/", "-") or "root"


class CephStack(pulumi.ComponentResource):
    def __init__(
        self,
        stack: StackConfig,
        nodes: dict,
        network: Optional[dict] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        """network: node -> the resources its addresses sit on (its KvmBridges)."""
        super().__init__("cephkvm:index:CephStack", "ceph", None, opts)
        cfg = stack.ceph
        for warning in cfg.warnings:
            pulumi.log.warn(warning, resource=self)
        by_name = {n.name: n for n in stack.nodes}
        access = {name: prepared.access for name, prepared in nodes.items()}
        secret = (
            ["nodes", "admin", "ssh_private_key"]
            if any("ssh_private_key" in a for a in access.values())
            else []
        )
        common = {"cluster_name": cfg.cluster_name}
        preps = [prepared.prep for prepared in nodes.values()]

        # Whatever holds data is protected (Pulumi's own `protect`) unless its opt-in is set:
        # a destroy or a removal is then refused at preview, before any host is touched.
        keep = not cfg.allow_data_loss
        pulumi.log.info(_protection_note(cfg), resource=self)
        self.cluster = CephCluster(
            "ceph-cluster",
            {
                **common,
                "owner": f"{pulumi.get_project()}/{pulumi.get_stack()}",
                "pin_fsid": cfg.fsid,
                "public_network": cfg.public_network,
                "cluster_network": cfg.cluster_network,
                "nodes": [
                    {"name": n, "address": by_name[n].public_address, **access[n]} for n in nodes
                ],
                "mons": list(cfg.mons),
                "allow_data_loss": cfg.allow_data_loss,
            },
            pulumi.ResourceOptions(
                parent=self, depends_on=preps, protect=keep, additional_secret_outputs=secret
            ),
        )
        common["fsid"] = self.cluster.fsid
        # Options read only at start go to ceph.conf too, and restart what they apply to.
        startup = ceph_restart.startup_options(cfg.options)
        at_start = ceph_restart.conf_text(startup)
        conf = (
            self.cluster.conf.apply(lambda text: text + at_start) if at_start else self.cluster.conf
        )
        # Nodes with a Ceph role hold the admin key; the others (KVM, CephFS clients) not.
        ceph_nodes = [n for n in nodes if set(by_name[n].roles) & {"mon", "mgr", "mds", "osd"}]
        self.confs = {
            n: CephConf(
                f"conf-{n}",
                {
                    "cluster_name": cfg.cluster_name,
                    "node": n,
                    **access[n],
                    "conf": conf,
                    "admin": n in ceph_nodes,
                    **({"admin_key": self.cluster.admin_key} if n in ceph_nodes else {}),
                },
                pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[self.cluster, *(network or {}).get(n, [])],
                    additional_secret_outputs=secret,
                ),
            )
            for n in nodes
        }
        admin_names = list(cfg.mons) + [n for n in ceph_nodes if n not in cfg.mons]
        # Where the cluster-wide resources run `ceph`: the first that answers of a few admin
        # nodes, mons first. Each such resource carries the list; all of them would grow
        # the state with nodes times mounts.
        admin = [access[n] for n in admin_names[:ADMIN_NODES]]
        admin_confs = [self.confs[n] for n in admin_names]
        timeout = {"timeout": cfg.health_timeout}
        down = stack.maintenance
        self.gate = maintenance.gate(
            stack,
            nodes,
            [access[n] for n in sorted(admin_names, key=lambda n: n in down)],
            [self.cluster, *admin_confs],
        )

        def wanted(n, kind):
            """What a node's daemons are asked beyond running: maintenance, a restart."""
            value = ceph_restart.restart_value(cfg.restart, startup, kind, n)
            return {
                **({"ensure": "maintenance"} if n in down else {}),
                **({"restart": value} if value else {}),
            }

        def waits(n):
            """In maintenance: the gate first. A rolling restart needs no chain here: each
            restart holds the provider's one-restart lock until its daemon is back, so a
            bring-up makes the daemons of a kind side by side."""
            return [self.gate] if n in down else []

        def per_node(cls, prefix, names, after, extra=lambda n: {}, own=lambda n: []):
            return [
                cls(
                    f"{prefix}-{n}",
                    {
                        **common,
                        "node": n,
                        **access[n],
                        **timeout,
                        **extra(n),
                        **wanted(n, prefix),
                    },
                    pulumi.ResourceOptions(
                        parent=self,
                        depends_on=[*after, *own(n), self.confs[n], *waits(n)],
                        additional_secret_outputs=secret,
                    ),
                )
                for n in names
            ]

        self.mons = per_node(
            CephMon,
            "mon",
            cfg.mons,
            [self.cluster],
            lambda n: {
                "address": by_name[n].public_address,
                "allow_data_loss": cfg.allow_data_loss,
            },
        )
        self.config = CephConfig(
            "ceph-config",
            {
                **common,
                "admin": admin,
                "mons": list(cfg.mons),
                "options": cfg.options,
                "allow_data_loss": cfg.allow_data_loss,
                **timeout,
            },
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[*self.mons, *admin_confs],
                protect=keep,
                additional_secret_outputs=secret,
            ),
        )
        # One mgr first, beside the OSDs (they need none to be made; the pools' PG states
        # do), the standbys after them: three mgrs loading their modules at once on 2 cores
        # held the OSDs back (bench/README). The last mgr's delete waits for the OSDs to go
        # (ceph_mgr). Restarting mgrs and OSDs keeps cephadm's order: every mgr first.
        restart = {
            k: any(wanted(n, k).get("restart") for n in names)
            for k, names in (("mgr", cfg.mgrs), ("osd", [n for n, _ in cfg.osds]))
        }
        lead = [] if all(restart.values()) else [n for n in cfg.mgrs if n not in down][:1]
        first = per_node(CephMgr, "mgr", lead or cfg.mgrs, [self.config])
        self.osds, osds_on = [], {}
        for node, device in cfg.osds:
            osd = CephOsd(
                f"osd-{node}-{_slug(device)}",
                {
                    **common,
                    "node": node,
                    **access[node],
                    "device": device,
                    "method": cfg.osd_method,
                    "wipe": cfg.wipe_devices,
                    "allow_removal": cfg.allow_osd_removal,
                    "allow_data_loss": cfg.allow_data_loss,
                    **wanted(node, "osd"),
                },
                pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[
                        self.config,
                        *([] if lead else first),
                        self.confs[node],
                        *waits(node),
                    ],
                    protect=keep and not cfg.allow_osd_removal,
                    additional_secret_outputs=secret,
                ),
            )
            self.osds.append(osd)
            osds_on.setdefault(node, []).append(osd)
        standbys = [n for n in cfg.mgrs if n not in (lead or cfg.mgrs)]
        # A standby after its own node's OSDs, the ones it would take CPU from: after every
        # OSD made the dependencies grow with mgrs times OSDs.
        self.mgrs = first + per_node(
            CephMgr, "mgr", standbys, [self.config, *first], own=lambda n: osds_on.get(n, [])
        )
        self.dashboard = None
        if cfg.dashboard:
            self.dashboard = CephDashboard(
                "ceph-dashboard",
                {
                    **common,
                    "admin": admin,
                    # served where cephkvm reaches the node: the operator's side
                    "mgrs": {n: by_name[n].address for n in cfg.mgrs},
                    "port": cfg.dashboard.port,
                    "user": cfg.dashboard.user,
                    **timeout,
                },
                pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[self.config, *self.mgrs],
                    additional_secret_outputs=[*SECRET_OUTPUTS, *secret],
                ),
            )

        # cephadm's restart order: mons, mgrs, OSDs, then MDS (when the MDS restart).
        mds_restart = any(wanted(n, "mds").get("restart") for n in cfg.mdss)
        self.mdss = per_node(
            CephMds, "mds", cfg.mdss, [self.config, *(self.osds if mds_restart else [])]
        )

        self.pools = {
            p["name"]: CephPool(
                f"pool-{p.get('key') or p['name']}",
                {
                    **common,
                    "admin": admin,
                    **p,
                },
                pulumi.ResourceOptions(
                    parent=self,
                    # after every OSD: made before they are in, a pool sized for the
                    # whole cluster is refused by Ceph's PGs-per-OSD limit (it counts the
                    # OSDs in), and an `up` removing a pool and OSDs drains them without it
                    depends_on=[self.config, *first, *self.osds],
                    protect=not p["allow_delete"],
                    additional_secret_outputs=secret,
                ),
            )
            for p in cfg.pools
        }

        self.filesystems = {}
        for fs in cfg.filesystems:
            used = [fs["metadata_pool"], fs["data_pool"], *fs["extra_data_pools"]]
            pools = [self.pools[p] for p in used]
            self.filesystems[fs["name"]] = CephFilesystem(
                f"fs-{fs['name']}",
                # its pools by key: a pool renamed through `key` is no filesystem replace
                keyed(
                    {**common, "admin": admin, **fs, "timeout": cfg.health_timeout},
                    _renamed(cfg.pools, used),
                ),
                pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[*pools, *self.mdss],
                    protect=not fs["allow_delete"],
                    additional_secret_outputs=secret,
                ),
            )

        self.mounts = []
        for m in cfg.mounts:
            fs = self.filesystems[m["fs_name"]]
            self.mounts.append(
                (
                    m,
                    CephFSMount(
                        f"mount-{m['node']}-{_slug(m['mountpoint'])}",
                        {
                            **common,
                            **m,
                            **access[m["node"]],
                            "mon_hosts": self.cluster.mon_hosts,
                            "admin": admin,
                            # A child inherits its parent's protect: a mount holds no data itself.
                        },
                        pulumi.ResourceOptions(
                            parent=fs,
                            depends_on=[fs, self.confs[m["node"]]],
                            protect=False,
                            additional_secret_outputs=secret,
                        ),
                    ),
                )
            )
        self.register_outputs({"fsid": self.cluster.fsid})

    def resources(self) -> list:
        """Every resource it made (the DestroyGuard depends on each by name: depending on
        the component does not reach the mounts, its grandchildren)."""
        return [
            self.cluster,
            *self.confs.values(),
            *([self.gate] if self.gate else []),
            *self.mons,
            self.config,
            *self.mgrs,
            *([self.dashboard] if self.dashboard else []),
            *self.mdss,
            *self.osds,
            *self.pools.values(),
            *self.filesystems.values(),
            *[mount for _, mount in self.mounts],
        ]

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
            "client_keys": pulumi.Output.secret(
                pulumi.Output.all(
                    **{f"{m['node']}:{m['mountpoint']}": r.client_key for m, r in self.mounts}
                )
            ),
            "csi": {"clusterID": self.cluster.fsid, "monitors": self.cluster.mon_hosts},
            **({"dashboard": self._dashboard_outputs()} if self.dashboard else {}),
        }

    def _dashboard_outputs(self) -> dict:
        """url (the active mgr's), urls (every mgr's), user; the password apart (__main__)."""
        d = self.dashboard
        return {"url": d.url, "urls": d.urls, "user": d.user, "password": d.password}


def _renamed(pools: tuple, used: list) -> dict:
    """{key: name} of the used pools whose name is not their key (renamed ones)."""
    return {
        p["key"]: p["name"]
        for p in pools
        if p["name"] in used and p.get("key") and p["key"] != p["name"]
    }


def destroy_allowed(cfg) -> bool:
    """May a destroy go ahead (the DestroyGuard's opt-in)? Only when everything that holds
    data may go: else a destroy would remove VMs, mounts and bridges before the first
    protected pool or filesystem refused it."""
    return bool(
        cfg.allow_data_loss
        and all(p["allow_delete"] for p in cfg.pools)
        and all(f["allow_delete"] for f in cfg.filesystems)
    )


def _protection_note(cfg) -> str:
    """One line that says what is protected and which setting lifts it, so a refused
    delete or replace in preview comes with its fix."""
    held = []
    if not cfg.allow_data_loss:
        held.append("the cluster (cephkvm:ceph.allow_data_loss)")
        if not cfg.allow_osd_removal:
            held.append("OSDs (cephkvm:ceph.allow_osd_removal)")
    held += [f"pool {p['name']} (its allow_delete)" for p in cfg.pools if not p["allow_delete"]]
    held += [
        f"filesystem {f['name']} (its allow_delete)"
        for f in cfg.filesystems
        if not f["allow_delete"]
    ]
    if not held:
        return "protected from delete: nothing (every opt-in is set)"
    return (
        "protected from delete and replace: " + ", ".join(held) + ". To remove one, set "
        "its setting to true, run `pulumi up`, then remove it."
    )
