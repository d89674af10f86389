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


def hand_over(node, props: dict, stop, alone: str | None = "restarts") -> None:
    """The active mgr stops, then is marked failed, so a standby takes over at once (not
    after the beacon grace). Failed while it ran, it respawned as a standby, which the mons
    could make active again (as ceph_mds measured). `alone`: what the warning says it does
    when there is no standby (None: nothing to warn about, as when the last mgr goes)."""
    c, name = props["cluster_name"], props["node"]
    mgr = ceph_facts.mgr_state(ceph_json(node, c, "mgr", "dump"))
    if mgr["active"] != name:
        return stop()
    if not _other_mgrs(node, c, name):  # the only mgr (one just removed is still listed)
        if alone:
            pulumi.log.warn(f"mgr.{name} {alone} with no standby: PG statistics pause meanwhile")
        return stop()
    stop()
    ceph(node, c, "mgr", "fail", name, change=True)
    seen = {}

    def taken_over():
        seen.update(ceph_facts.mgr_state(ceph_json(node, c, "mgr", "dump")))
        # The standbys may go meanwhile (a destroy removes every mgr at once): then there
        # is no one to wait for.
        return seen["available"] and seen["active"] != name or not _other_mgrs(node, c, name)

    base.wait_until(
        taken_over,
        timeout=props["timeout"],
        what=f"a standby mgr to take over from mgr.{name}",
        report=lambda: (
            f"Last seen: active {seen.get('active') or 'none'} "
            f"({'available' if seen.get('available') else 'not available'}), "
            f"standbys {', '.join(seen.get('standbys') or []) or 'none'}."
        ),
    )


def last_after_the_osds(node, props: dict) -> None:
    """The cluster's last mgr goes only once no OSD is left: an OSD's removal asks a mgr
    (PG states, `safe-to-destroy`), and no dependency removes the OSDs first, since they
    need no mgr to be made and do not wait for one (bench/README). It waits while the OSDs
    keep going (they are removed one at a time, each maybe draining). A cluster that no
    longer answers has no OSD left to remove."""
    c, name, seen = props["cluster_name"], props["node"], {"osds": []}

    def gone() -> bool:
        others = _other_mgrs(node, c, name)
        osds = ceph(node, c, "osd", "tree", "-f", "json", check=False, timeout=60)
        keep = not (others is None or others or osds.exit_code)
        seen["osds"] = sorted(ceph_facts.osds(osds.stdout)) if keep else []
        return not seen["osds"]

    base.wait_until(
        gone,
        timeout=props["timeout"] * 5,  # an OSD's own removal may drain that long (ceph_osd)
        interval=3,
        left=lambda: len(seen["osds"]),
        what=f"the cluster's OSDs to be removed before its last mgr, mgr.{name}",
        report=lambda: (
            f"OSDs left: {', '.join(f'osd.{i}' for i in seen['osds'])}. Their removal asks a "
            "mgr, so this last one stays until they are gone: remove them first, or bring "
            "another mgr up (its node out of maintenance), then run the same command again."
        ),
    )


def _other_mgrs(node, cluster: str, name: str) -> list | None:
    """The other mgrs the cluster lists that still hold a key (None: no answer). A mgr
    just removed stays listed until its beacon grace (30 s) has passed; its key is gone."""
    dump = ceph(node, cluster, "mgr", "dump", "-f", "json", check=False, timeout=60)
    if dump.exit_code:
        return None
    mgr = ceph_facts.mgr_state(dump.stdout)
    listed = sorted({mgr["active"], *mgr["standbys"]} - {name, ""})
    return [
        m
        for m in listed
        if ceph(node, cluster, "auth", "get", f"mgr.{m}", check=False, timeout=60).exit_code == 0
    ]


class CephMgrProvider(ceph_daemon.DaemonProvider):
    kind = KIND
    registered = staticmethod(registered)
    hand_over = staticmethod(hand_over)
    may_go = staticmethod(last_after_the_osds)


class CephMgr(pulumi.dynamic.Resource, module="cephkvm", name="CephMgr"):
    ensure: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephMgrProvider(), name, props, opts)
