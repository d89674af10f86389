"""CephOsd: one OSD on one (node, device), under the node's CRUSH host.

Two ways to make it, chosen per stack: `raw` (ceph-volume raw prepare + activate
--no-systemd, then ceph-osd started with a pid file: what works without device-mapper and
systemd, as on the lab) and `lvm` (ceph-volume lvm create: real hosts, systemd units).
A device that already holds data is refused unless the stack allows wiping it; a device
that already holds an OSD of this cluster is adopted (a crashed create), never re-made.
Removal needs `allow_removal` and always drains: out, then wait until every placement
group is active+clean without it and `safe-to-destroy` agrees, then stop and purge, one OSD
at a time in the whole stack. `allow_data_loss` only lets a dead OSD that cannot drain be
purged. The device is zapped only when ceph-volume shows it still holds this OSD (its uuid
and this cluster's fsid) and nothing on it is mounted or held.
"""

from __future__ import annotations

import json
import shlex
import threading
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts, services
from providers.ceph_cli import (
    ceph,
    ceph_json,
    keyring,
    mark_restarted,
    one_restart_at_a_time,
    pg_states,
    restart_asked,
    restart_done,
    restart_pending,
    seen,
    wait_ok_to_stop,
)
from providers.errors import Failure
from providers.node_prep import apt_install
from providers.schema.ceph import OsdInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py OsdInputs (+ ssh_private_key?)
# outputs: osd_id, osd_uuid, host
INPUTS = OsdInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
OUTPUTS = ("osd_id", "osd_uuid", "host")

DRAIN_POLL = 3  # seconds between looks at a draining OSD
_REMOVALS = threading.Lock()  # one provider process serves the stack: one drain at a time


class CephOsdProvider(base.Provider):
    INPUTS = INPUTS
    SETTLE = True
    DELETE_BEFORE_REPLACE = True

    def create(self, props):
        outs = _converge(props, self.node)
        return CreateResult(f"{props['node']}:{props['device']}", {**props, **outs})

    def read(self, id_, props):
        node = self.node
        tree = ceph_facts.osds(ceph_json(node, props["cluster_name"], "osd", "tree"))
        osd = tree.get(props.get("osd_id"))
        if osd is None:
            return ReadResult("", {})
        ensure = seen(props["ensure"], osd["up"], osd["up"] and osd["in"])
        if osd["up"] and _has_noout(node, props, props["osd_id"]):
            # Running with its own noout: a run killed half way into or out of maintenance
            # (or a restart). Neither up nor maintenance, so the next up finishes either.
            ensure = "noout"
        return ReadResult(id_, {**props, "host": osd["host"], "ensure": ensure})

    def update(self, _id, olds, news):
        if news["ensure"] == "maintenance":
            outs = {k: olds.get(k) for k in OUTPUTS}
            return UpdateResult(
                {**news, **outs, **_stop_for_maintenance(news, self.node, outs["osd_id"])}
            )
        name = f"osd.{olds['osd_id']}"
        with one_restart_at_a_time(olds, news):
            if restart_pending(self.node, olds, news, name):
                # the previous OSD's PGs are active again first
                wait_ok_to_stop(
                    self.node, news["cluster_name"], "osd", [olds["osd_id"]], news["timeout"]
                )
                _stop_for_maintenance(news, self.node, olds["osd_id"])
                mark_restarted(self.node, olds, news, name)
            outs = _converge(news, self.node)
            restart = restart_asked(olds, news)
            if restart or olds.get("ensure") != "up":  # maintenance, noout left, or down
                _back_from_maintenance(news, self.node, outs["osd_id"])
            restart_done(self.node, olds, news, name)
        return UpdateResult({**news, **outs})

    def delete(self, _id, props):
        osd_id = props.get("osd_id")
        if not (props.get("allow_removal") or props.get("allow_data_loss")):
            raise Failure(
                f"refusing to remove osd.{osd_id} ({props['node']}:{props['device']}): set "
                "cephkvm:ceph.allow_osd_removal: true, run `pulumi up`, then remove it again "
                "(it is drained first; nothing is lost)"
            )
        node = self.node
        with _REMOVALS:
            tree = ceph_facts.osds(ceph_json(node, props["cluster_name"], "osd", "tree"))
            if osd_id in tree:
                _drain(props, node, osd_id, tree)
                systemd = services.has_systemd(node)
                services.stop(node, _daemon(props, osd_id), systemd)
                services.release(node, _daemon(props, osd_id), systemd)  # ids are reused
                ceph(
                    node,
                    props["cluster_name"],
                    "osd",
                    "purge",
                    osd_id,
                    "--yes-i-really-mean-it",
                    change=True,
                )
            _clean(props, node, osd_id)
            _drop_bootstrap_key_if_last(props, node)


# --- create -----------------------------------------------------------------------------


def _daemon(props: dict, osd_id: int) -> services.Daemon:
    return services.ceph_daemon("osd", str(osd_id), props["cluster_name"])


def _converge(props: dict, node) -> dict:
    c = props["cluster_name"]
    _require_device(props, node)
    _ceph_volume_needs(node)  # before the first ceph-volume call
    listed = _listed(props, node)
    osd = _ours(props, listed)
    if osd is None:
        _preflight(props, node, listed)
        _bootstrap_key(props, node)
        _prepare(props, node)
        osd = _ours(props, _listed(props, node))
        if osd is None:
            raise Failure(
                f"{props['node']}: ceph-volume prepared {props['device']} but lists no OSD on it"
            )
    systemd = services.has_systemd(node)
    if props["method"] == "raw":
        if not node.ok(["test", "-e", f"/var/lib/ceph/osd/{c}-{osd['osd_id']}/keyring"]):
            node.run(
                [
                    "ceph-volume",
                    "--cluster",
                    c,
                    "raw",
                    "activate",
                    "--device",
                    props["device"],
                    "--no-systemd",
                ],
                change=True,
                timeout=300,
            )
    services.ensure_running(node, _daemon(props, osd["osd_id"]), systemd, timeout=60)
    tree = ceph_facts.osds(ceph_json(node, c, "osd", "tree"))
    if osd["osd_id"] in tree and not tree[osd["osd_id"]]["in"]:
        ceph(node, c, "osd", "in", osd["osd_id"], change=True)

    def up_in():
        found = ceph_facts.osds(ceph_json(node, c, "osd", "tree")).get(osd["osd_id"])
        return found if found and found["up"] and found["in"] else None

    found = base.wait_until(
        up_in,
        timeout=props["timeout"],
        what=f"osd.{osd['osd_id']} up and in",
        report=lambda: f"See /var/log/ceph/{c}-osd.{osd['osd_id']}.log on {props['node']}.",
    )
    return {
        "osd_id": osd["osd_id"],
        "osd_uuid": osd["osd_uuid"],
        "host": found["host"],
        "ensure": "up",
    }


def _ours(props: dict, listed: dict | None) -> dict | None:
    """The OSD listed on the device, if it belongs to this cluster; a foreign one is
    refused (or left to the wipe) by the preflight."""
    return listed if listed and listed.get("ceph_fsid") == props["fsid"] else None


def _listed(props: dict, node) -> dict | None:
    """The OSD ceph-volume finds on the device. With --format json an empty device is `{}`
    and exit 0, so a failure is a fault: taken for "no OSD" it would let a wipe go ahead."""
    c, dev = props["cluster_name"], props["device"]
    if props["method"] == "raw" and not _bluestore_label(node, dev):
        return None
    out = node.run(
        ["ceph-volume", "--cluster", c, props["method"], "list", dev, "--format", "json"]
    ).stdout
    if props["method"] == "raw":
        return ceph_facts.raw_devices(out).get(dev)
    for osd_id, vols in (json.loads(out or "{}") or {}).items():
        tags = vols[0].get("tags", {})
        return {
            "osd_id": int(osd_id),
            "osd_uuid": tags.get("ceph.osd_fsid", ""),
            "ceph_fsid": tags.get("ceph.cluster_fsid", ""),
        }
    return None


def _bluestore_label(node, dev: str) -> bool:
    """Whether the device starts with a BlueStore label, which is what ceph-volume's raw
    listing looks for: without one it lists nothing, and asking it costs 0.4-1 s of an OSD's
    bring-up (bench/README). A device that cannot be read is a fault, not a blank one."""
    script = 'l=$(head -c 23 -- "$1") || exit 2; [ "$l" = "bluestore block device" ] && echo yes'
    return node.run(["sh", "-c", script + " || echo no", "sh", dev]).stdout.strip() == "yes"


def _ceph_volume_needs(node) -> None:
    """ceph-volume calls udevadm to inspect devices; Debian's ceph-osd does not pull in
    udev, and hosts without systemd (the lab) may lack it."""
    if not node.ok(["test", "-x", "/usr/bin/udevadm"]):
        apt_install(node, ["udev"], timeout=900)


def _require_device(props: dict, node) -> None:
    if not node.ok(["test", "-b", props["device"]]):
        raise Failure(
            f"{props['node']}:{props['device']} is not a block device on the node; fix the "
            "node's disks list in the stack config"
        )


def _preflight(props: dict, node, old: dict | None) -> None:
    """The device holds nothing (old: the OSD ceph-volume lists on it, not this cluster's),
    or the stack allows wiping it."""
    dev, where = props["device"], f"{props['node']}:{props['device']}"
    held = []
    signatures = node.run(["wipefs", "-n", "-p", dev], check=False).stdout
    held += [
        line.split(",")[-1]
        for line in signatures.splitlines()
        if line and not line.startswith("#") and "," in line
    ]
    if node.ok(["blkid", "-p", dev]):
        held.append("a blkid-visible signature")
    if old:
        held.append(f"OSD {old['osd_id']} of cluster {old.get('ceph_fsid')}")
    if not held:
        return
    if not props.get("wipe"):
        raise Failure(
            f"{where} is not empty ({', '.join(held)}); refusing to overwrite "
            "it. Wipe it by hand, or allow it with cephkvm:ceph.wipe_devices: true"
        )
    _refuse_busy(props, node)
    node.run(["wipefs", "-a", dev], change=True)
    node.run(
        ["dd", "if=/dev/zero", f"of={dev}", "bs=1M", "count=16", "oflag=direct", "conv=fsync"],
        change=True,
    )


def _bootstrap_key(props: dict, node) -> None:
    """ceph-volume authenticates as client.bootstrap-osd. The key comes from the cluster
    each time: a keyring left by an earlier cluster on the node must not be trusted."""
    c = props["cluster_name"]
    path = f"/var/lib/ceph/bootstrap-osd/{c}.keyring"
    found = ceph_facts.auth_entity(ceph_json(node, c, "auth", "get", "client.bootstrap-osd"))
    node.put_if_changed(
        path,
        keyring("client.bootstrap-osd", found["key"], found["caps"]),
        mode="0600",
        owner="ceph:ceph",
        secret=True,
    )


def _prepare(props: dict, node) -> None:
    c, dev = props["cluster_name"], props["device"]
    if props["method"] == "raw":
        node.run(
            ["ceph-volume", "--cluster", c, "raw", "prepare", "--bluestore", "--data", dev],
            change=True,
            timeout=600,
        )
    else:  # lvm create also activates and enables ceph-osd@ID under systemd
        node.run(
            ["ceph-volume", "--cluster", c, "lvm", "create", "--bluestore", "--data", dev],
            change=True,
            timeout=600,
        )


# --- update: maintenance ----------------------------------------------------------------


def _stop_for_maintenance(props: dict, node, osd_id: int) -> dict:
    """noout for this OSD only (its PGs wait for it instead of moving), then stop it."""
    c = props["cluster_name"]
    ceph(node, c, "osd", "add-noout", f"osd.{osd_id}", change=True)
    services.stop(node, _daemon(props, osd_id), services.has_systemd(node), hold=True)
    base.wait_until(
        lambda: not ceph_facts.osds(ceph_json(node, c, "osd", "tree")).get(osd_id, {}).get("up"),
        timeout=props["timeout"],
        what=f"osd.{osd_id} to be marked down",
    )
    return {"ensure": "maintenance"}


def _has_noout(node, props: dict, osd_id: int) -> bool:
    states = ceph_facts.osd_states(ceph_json(node, props["cluster_name"], "osd", "dump"))
    return "noout" in states.get(osd_id, ())


def _back_from_maintenance(props: dict, node, osd_id: int) -> None:
    """It runs again: lift its noout and wait until every PG is active+clean, so the next
    node's maintenance (or the VMs moving home) starts from a healthy cluster."""
    c = props["cluster_name"]
    ceph(node, c, "osd", "rm-noout", f"osd.{osd_id}", change=True)
    base.wait_until(
        lambda: ceph_facts.all_clean(_pg_states(node, c)),
        timeout=props["timeout"] * 5,
        interval=DRAIN_POLL,
        what="every placement group to be active+clean",
        report=lambda: (
            f"PG states: {_pg_states(node, c)}. Recovery goes on; run "
            "`pulumi up` again once it has finished."
        ),
    )


def _pg_states(node, cluster: str) -> dict:
    return pg_states(node, cluster, "dump", "pgs_brief")


# --- delete -----------------------------------------------------------------------------


def _drain(props: dict, node, osd_id: int, tree: dict) -> None:
    """Mark it out and wait until every PG is active+clean without it and ceph says it is
    safe to destroy; refuse when the other OSDs' hosts cannot hold every pool's copies.
    Only with allow_data_loss may an OSD that cannot drain (it is down, or there is no room
    left, as when the whole cluster is destroyed) be purged without that."""
    c = props["cluster_name"]
    may_lose = bool(props.get("allow_data_loss"))
    short = _no_room(props, node, osd_id, tree)
    if short and not may_lose:
        raise Failure(
            f"refusing to remove osd.{osd_id} ({props['node']}:{props['device']})"
            f": {short}. Add an OSD on another host or lower the pools' size "
            "first."
        )
    # CRUSH weight 0 first: its PGs move while it still serves them (misplaced, never
    # degraded); `out` alone drops it from acting sets at once (measured: degraded objects).
    if tree[osd_id]["up"]:
        ceph(node, c, "osd", "crush", "reweight", f"osd.{osd_id}", "0", change=True)
    elif tree[osd_id]["in"]:
        ceph(node, c, "osd", "out", osd_id, change=True)
    if may_lose and (short or not tree[osd_id]["up"]) and not _drained(node, c, osd_id):
        pulumi.log.warn(
            f"osd.{osd_id} cannot drain ({short or 'it is down'}); purging it "
            "anyway, as allow_data_loss says"
        )
        return
    base.wait_until(
        lambda: _drained(node, c, osd_id),
        timeout=props.get("timeout", 180) * 5,
        interval=DRAIN_POLL,
        what=f"osd.{osd_id}'s placement groups to be active+clean elsewhere",
        report=lambda: _drain_report(node, c, osd_id),
    )
    if ceph_facts.osds(ceph_json(node, c, "osd", "tree"))[osd_id]["in"]:
        ceph(node, c, "osd", "out", osd_id, change=True)


def _no_room(props: dict, node, osd_id: int, tree: dict) -> str:
    """Why the other OSDs cannot hold every pool's copies ('' when they can)."""
    pools = ceph_facts.pools(ceph_json(node, props["cluster_name"], "osd", "pool", "ls", "detail"))
    hosts = {o["host"] for i, o in tree.items() if i != osd_id and o["up"] and o["in"]}
    need = max([p["size"] for p in pools.values()] or [0])
    if need <= len(hosts):
        return ""
    short = sorted(n for n, p in pools.items() if p["size"] > len(hosts))
    return (
        f"the other OSDs span {len(hosts)} host(s) but pool(s) {', '.join(short)} keep "
        f"{need} copies"
    )


def _drained(node, cluster: str, osd_id: int) -> bool:
    """Every PG active+clean (none degraded, none still on the OSD) and safe-to-destroy."""
    return (
        ceph_facts.all_clean(_pg_states(node, cluster))
        and ceph(node, cluster, "osd", "safe-to-destroy", osd_id, check=False).exit_code == 0
    )


def _drain_report(node, cluster: str, osd_id: int) -> str:
    safe = ceph(node, cluster, "osd", "safe-to-destroy", osd_id, check=False)
    return (
        f"PG states: {_pg_states(node, cluster)}; safe-to-destroy: "
        f"{(safe.stderr or safe.stdout).strip() or 'yes'}. The OSD stays out; run "
        "`pulumi up` again once recovery has finished."
    )


def _clean(props: dict, node, osd_id) -> None:
    c = props["cluster_name"]
    if osd_id is not None:
        data = f"/var/lib/ceph/osd/{c}-{osd_id}"
        node.run(
            ["sh", "-c", f"! mountpoint -q {shlex.quote(data)} || umount {shlex.quote(data)}"],
            change=True,
        )
        node.run(["rm", "-rf", data], change=True)
    if _holds_this_osd(props, node):
        _refuse_busy(props, node)
        _zap(props, node)


def _drop_bootstrap_key_if_last(props: dict, node) -> None:
    """A node without OSDs keeps no key that can make one (a new OSD's create writes it
    again)."""
    c = props["cluster_name"]
    tree = ceph_facts.osds(ceph_json(node, c, "osd", "tree"))
    if not [o for o in tree.values() if o["host"] == props.get("host")]:
        node.run(["rm", "-f", f"/var/lib/ceph/bootstrap-osd/{c}.keyring"], change=True)


def _holds_this_osd(props: dict, node) -> bool:
    """Device names move between boots: zap only what ceph-volume shows is this OSD."""
    found = _listed(props, node) if node.ok(["test", "-b", props["device"]]) else None
    return bool(
        found
        and found.get("osd_uuid") == props.get("osd_uuid")
        and found.get("ceph_fsid") == props["fsid"]
    )


def _refuse_busy(props: dict, node) -> None:
    dev = shlex.quote(props["device"])
    script = (
        f'real=$(readlink -f {dev}); lsblk -nro MOUNTPOINT "$real" | grep -q . && '
        'echo mounted; ls "/sys/class/block/$(basename "$real")/holders" 2>/dev/null '
        "| grep -q . && echo held; true"
    )
    busy = node.run(["sh", "-c", script]).stdout.split()
    if props["method"] == "lvm":  # the OSD's own LV holds the device; zap removes it
        busy = [b for b in busy if b != "held"]
    if busy:
        raise Failure(
            f"{props['node']}:{props['device']}: a partition on it is mounted "
            f"or held by another device ({', '.join(busy)}); refusing to write to "
            "it. Free it first (see lsblk and /sys/class/block/*/holders)."
        )


def _zap(props: dict, node) -> None:
    dev = props["device"]
    if props["method"] == "lvm":
        node.run(["ceph-volume", "lvm", "zap", "--destroy", dev], change=True, check=False)
    else:
        node.run(
            ["dd", "if=/dev/zero", f"of={dev}", "bs=1M", "count=16", "oflag=direct", "conv=fsync"],
            change=True,
        )


class CephOsd(pulumi.dynamic.Resource, module="cephkvm", name="CephOsd"):
    osd_id: pulumi.Output[int]
    osd_uuid: pulumi.Output[str]
    host: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephOsdProvider(), name, {**{k: None for k in OUTPUTS}, **props}, opts)
