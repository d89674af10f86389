"""A CloudVM's live migration to another node: peer to peer, on shared storage only, with
the stack's migration key (MigrationKey / MigrationAccess) and the destination's pinned host
key. A domain that does not run is moved by its definition."""

from __future__ import annotations

import contextlib
import secrets

from providers import base, libvirt_conn
from providers.errors import Failure
from providers.transport import Session, known_hosts_line, libvirt_uri

QEMU_DOWNTIME_MS = 300  # QEMU's own default downtime limit

SHARED_FS = (
    "ceph",
    "fuse.ceph",
    "fuse.ceph-fuse",
    "nfs",
    "nfs4",
    "glusterfs",
    "fuse.glusterfs",
    "gfs2",
    "ocfs2",
)


def migrate(olds: dict, news: dict, dest: Session) -> dict:
    """From olds' node to news' (dest), peer to peer: the source libvirtd connects to the
    destination's itself (as measured in DESIGN.md 5). The controller-managed mode (migrate3
    with two client connections) hung here after QEMU had finished: the destination's
    Prepare never returned over libssh. Returns what the live move cost (job_figures), or {}
    when nothing ran live."""
    import libvirt

    name = news["name"]
    source = base.session({**news, "connection": olds["connection"]})
    with libvirt_conn.connect(dest) as dconn, libvirt_conn.connect(source) as sconn:
        # Only this stack's domains move; one of that name that is not ours is refused.
        dom = libvirt_conn.own(sconn, {**news, "node": olds["node"]}, refuse=True)
        there = libvirt_conn.own(dconn, news, refuse=True)
        if dom is None:
            if there is not None:
                return {}  # already there (an earlier run was killed after migrating)
            raise Failure(
                f"{name}: on neither {olds['node']} nor {news['node']}; run `pulumi refresh`"
            )
        if there is not None:
            raise Failure(
                f"{name}: defined on both {olds['node']} and {news['node']}; "
                "undefine the stale copy by hand"
            )
        if not dom.isActive():
            dconn.defineXML(
                dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
            )
            dom.undefine()
            return {}
        if not storage_is_shared(source, news):
            raise Failure(
                f"{name}: {news['storage']} on {olds['node']} is not CephFS or other "
                "shared storage, so a live migration would lose the disk. Mount CephFS there, "
                "or set shared_storage if every node sees the same directory."
            )
        # libvirt cannot tell that CephFS is shared and refuses without UNSAFE (DESIGN.md 5).
        flags = (
            libvirt.VIR_MIGRATE_LIVE
            | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_PERSIST_DEST
            | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
            | libvirt.VIR_MIGRATE_UNSAFE
        )
        if news.get("migration_auto_converge"):
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        params = (
            {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: news["migration_bandwidth_mib"]}
            if news.get("migration_bandwidth_mib")
            else {}
        )
        # QEMU's downtime limit is the domain's own setting, set before each move (libvirt
        # has no migrateToURI3 parameter for it): unset, QEMU's default, not the last one.
        dom.migrateSetMaxDowntime(news.get("migration_max_downtime_ms") or QEMU_DOWNTIME_MS, 0)
        with _peer_uri(source, dest, news) as uri:
            dom.migrateToURI3(uri, params, flags)
        return job_figures(libvirt_conn.domain(dconn, name))


def job_figures(dom) -> dict:
    """The finished migration as the destination's libvirt measured it: downtime (the guest
    paused), total time, data sent; {} when libvirt kept no record."""
    import libvirt

    try:
        stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED) if dom else {}
    except libvirt.libvirtError:
        stats = {}
    figures = {
        "downtime_ms": stats.get("downtime"),
        "total_ms": stats.get("time_elapsed"),
        "data_mib": round(stats["data_total"] / (1 << 20), 1) if "data_total" in stats else None,
    }
    return {k: v for k, v in figures.items() if v is not None}


@contextlib.contextmanager
def _peer_uri(source: Session, dest: Session, news: dict):
    """The destination's libvirt URI as the source libvirtd uses it: the stack's migration
    key (already on every KVM node; the controller's key never leaves the controller) and
    the destination's pinned host key, in a root-only directory on the source that exists
    only for the migration."""
    pin = known_hosts_line(dest.host)
    if not news.get("migration_key") or not pin:
        raise Failure(
            f"{news['name']}: moving it to {dest.name} needs the stack's migration key on "
            f"the KVM nodes and {dest.name}'s host key (pinned or recorded); run `pulumi up` "
            "with both nodes listed with the kvm role"
        )
    tmp = f"/run/cephkvm/migrate-{secrets.token_hex(6)}"
    source.run(["mkdir", "-p", "-m", "0700", tmp], change=True)
    try:
        source.put(f"{tmp}/known_hosts", pin, mode="0600")
        yield libvirt_uri(dest.host, news["migration_key"], f"{tmp}/known_hosts")
    finally:
        source.run(["rm", "-rf", "--", tmp], change=True)


def storage_is_shared(node: Session, p: dict) -> bool:
    """The operator says so (shared_storage), or p's storage is on a shared filesystem."""
    if p.get("shared_storage"):
        return True
    out = node.run(
        ["findmnt", "-n", "-o", "FSTYPE", "--target", p["storage"]], check=False
    ).stdout.strip()
    return out in SHARED_FS
