"""KvmBridge: on one node, a Linux bridge over one or more NICs that takes over their
addressing, and a libvirt network of mode bridge that VMs attach to.

Where the node runs systemd and has netplan, the bridge is a netplan file
(/etc/netplan/60-cephkvm-BR.yaml) applied with `netplan apply`; elsewhere (the lab,
containers) it is made live with iproute2: the bridge takes the first NIC's MAC, the NIC is
enslaved and its addresses move to the bridge, which an open SSH session survives. The YAML
is validated with `netplan generate` in a scratch root either way, when netplan exists.

Every change that can cut the node off is applied like `netplan try`: a detached guard on
the node applies it, then restores the previous state unless the controller confirms within
confirm_timeout seconds, after a NEW connection to the node's sshd got its banner (the
confirmation itself goes over the node's one SSH connection). Delete gives the NICs their
addressing back.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Optional

import pulumi
import yaml
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts, libvirt_conn, services
from providers.bridge_scripts import (
    RUN_DIR,
    apply,
    apply_script,
    guard_script,
    member_master,
    netplan_doc,
    netplan_path,
    netplan_restore,
    ports,
    q,
    restore_script,
)
from providers.ceph_cli import ceph, local_clusters
from providers.errors import Failure
from providers.schema.kvm import BridgeInputs
from providers.transport import Session, TransportError

# --- input schema -----------------------------------------------------------------------
# providers/schema/kvm.py BridgeInputs (+ ssh_private_key?)
# outputs: applied_mode, mac, previous (the members' addressing before), effective
#          (addresses, gateway as applied), network_active
INPUTS = BridgeInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class KvmBridgeProvider(base.Provider):
    INPUTS = INPUTS
    DELETE_BEFORE_REPLACE = True

    def fill(self, news):
        news.setdefault("network", news.get("name"))
        return news

    def diff(self, _id, olds, news):
        result = super().diff(_id, olds, news)
        # A refresh that found the libvirt network gone or stopped: update recreates it.
        if olds.get("network_active") is False:
            result.changes = True
        return result

    def create(self, props):
        node = self.node
        snap = observe(node)
        previous = _previous(props, snap)
        wanted = _wanted(props, previous)
        mode = _mode(node, props)
        _validate_netplan(node, props, wanted)
        if not _matches(snap, props, wanted):
            rollback = (
                netplan_restore(props) if mode == "netplan" else restore_script(props, previous)
            )
            _apply_guarded(node, props, apply(props, wanted, mode), rollback)
            _wait_ceph_settled(node, props)
        active = _ensure_network(node, props)
        return CreateResult(
            f"{props['node']}/{props['name']}",
            {
                **props,
                "applied_mode": mode,
                "mac": wanted["mac"],
                "previous": previous,
                "effective": wanted,
                "network_active": active,
            },
        )

    def read(self, id_, props):
        snap = observe(self.node)
        link = snap["links"].get(props["name"])
        if link is None:
            return ReadResult("", {})
        found = {
            "interfaces": [
                m
                for m in props.get("interfaces", [])
                if snap["links"].get(m, {}).get("master") == member_master(props)
            ],
            "gateway": _gateway_on(snap, props["name"]),
        }
        effective = props.get("effective") or {}
        if props.get("addresses") or sorted(link["addrs"]) != sorted(
            effective.get("addresses", [])
        ):
            found["addresses"] = link["addrs"]
        if not props.get("gateway") and found["gateway"] == effective.get("gateway"):
            found["gateway"] = props.get("gateway")
        active = _network_active(self.node, props)
        if active is not None:  # None: libvirtd does not answer; NodePrep reports that
            found["network_active"] = active
        return ReadResult(id_, {**props, **found})

    def state_only(self, olds: dict, news: dict) -> bool:
        # A libvirt network found inactive (read) is restarted even when nothing else changed.
        return super().state_only(olds, news) and olds.get("network_active") is not False

    def update(self, _id, olds, news):
        node = self.node
        previous = olds.get("previous") or _previous(news, observe(node))
        wanted = _wanted(news, previous)
        mode = _mode(node, news)
        _validate_netplan(node, news, wanted)
        snap = observe(node)
        if not _matches(snap, news, wanted):
            old_wanted = olds.get("effective") or _wanted(olds, previous)
            rollback = (
                netplan_restore(news) if mode == "netplan" else apply_script(olds, old_wanted)
            )
            _apply_guarded(node, news, apply(news, wanted, mode), rollback)
            _wait_ceph_settled(node, news)
        if olds.get("network") != news["network"]:
            _remove_network(base.session(olds), olds)  # through the connection that made it
        active = _ensure_network(node, news)
        return UpdateResult(
            {
                **news,
                "applied_mode": mode,
                "mac": wanted["mac"],
                "previous": previous,
                "effective": wanted,
                "network_active": active,
            }
        )

    def delete(self, _id, props):
        node = self.node
        _remove_network(node, props)
        snap = observe(node)
        if props["name"] not in snap["links"]:
            return
        wanted = props.get("effective") or _wanted(props, props.get("previous") or {})
        if props.get("applied_mode") == "netplan":
            # netplan owns the interfaces there: drop our file and let it re-render the rest.
            path, kept = q(netplan_path(props)), q(f"{RUN_DIR}/{props['name']}.netplan-deleted")
            _apply_guarded(
                node,
                props,
                f"set -e\ncp {path} {kept}\nrm -f {path}\nnetplan apply\n",
                f"cp {kept} {path}\nnetplan apply\n",
            )
        else:
            _apply_guarded(
                node,
                props,
                restore_script(props, props.get("previous") or {}),
                apply_script(props, wanted),
            )
        _wait_ceph_settled(node, props)  # the next node's bridge goes after Ceph recovered


# --- facts ------------------------------------------------------------------------------

# `&&`: a failing `ip` is an error, never "no links" (read would take the bridge for gone)
OBSERVE_SCRIPT = "ip -j addr show && echo '#---' && ip -j route show default"


def observe(node: Session) -> dict:
    """links: name -> {mac, master, addrs (global, CIDR)}; routes: default routes."""
    out = node.run(["sh", "-c", OBSERVE_SCRIPT]).stdout
    return parse_observed(out)


def parse_observed(text: str) -> dict:
    addr_text, _, route_text = text.partition("#---")
    links = {}
    for link in json.loads(addr_text or "[]"):
        addrs = [
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("scope") == "global"
        ]
        links[link["ifname"]] = {
            "mac": link.get("address"),
            "master": link.get("master"),
            "addrs": addrs,
        }
    routes = [
        {"via": r.get("gateway"), "dev": r.get("dev")}
        for r in json.loads(route_text.strip() or "[]")
    ]
    return {"links": links, "routes": routes}


def _gateway_on(snap: dict, dev: str):
    for route in snap["routes"]:
        if route["dev"] == dev and route["via"]:
            return route["via"]
    return None


def _previous(props: dict, snap: dict) -> dict:
    """The members' addressing before the bridge took it: what delete gives back."""
    members = {m: snap["links"].get(m, {}).get("addrs", []) for m in props["interfaces"]}
    missing = [m for m in props["interfaces"] if m not in snap["links"]]
    if missing:
        raise Failure(
            f"{props['node']}: no interface {', '.join(missing)} for bridge "
            f"{props['name']}; interfaces there: {', '.join(snap['links'])}"
        )
    routes = [r for r in snap["routes"] if r["dev"] in props["interfaces"]]
    bridge = snap["links"].get(props["name"])
    if bridge:  # adopted after a crash: the bridge already holds what the members had
        first = props["interfaces"][0]
        members[first] = members[first] or bridge["addrs"]
        routes = routes or [
            {"via": r["via"], "dev": first} for r in snap["routes"] if r["dev"] == props["name"]
        ]
    return {
        "addresses": members,
        "routes": routes,
        "mac": snap["links"][props["interfaces"][0]]["mac"],
    }


def _wanted(props: dict, previous: dict) -> dict:
    moved = [a for m in props["interfaces"] for a in previous.get("addresses", {}).get(m, [])]
    gateway = props.get("gateway") or next(
        (r["via"] for r in previous.get("routes", []) if r["via"]), None
    )
    return {
        "addresses": list(props.get("addresses") or moved),
        "gateway": gateway,
        "mac": previous.get("mac"),
    }


def _matches(snap: dict, props: dict, wanted: dict) -> bool:
    bridge = snap["links"].get(props["name"])
    if not bridge:
        return False
    members_ok = all(
        snap["links"].get(m, {}).get("master") == member_master(props) for m in props["interfaces"]
    ) and all(snap["links"].get(p, {}).get("master") == props["name"] for p in ports(props))
    return (
        members_ok
        and sorted(bridge["addrs"]) == sorted(wanted["addresses"])
        and _gateway_on(snap, props["name"]) == wanted["gateway"]
    )


def _mode(node: Session, props: dict) -> str:
    if props["mode"] != "auto":
        return props["mode"]
    netplan = node.ok(["sh", "-c", "command -v netplan"])
    return "netplan" if netplan and services.has_systemd(node) else "iproute2"


def _validate_netplan(node: Session, props: dict, wanted: dict) -> None:
    """`netplan generate` on the YAML in a scratch root: the line and column of any
    mistake, before anything on the node changes. Staged for netplan mode."""
    if not node.ok(["sh", "-c", "command -v netplan"]):
        return
    text = yaml.safe_dump(netplan_doc(props, wanted), sort_keys=False)
    tmp = node.run(["mktemp", "-d"]).stdout.strip()
    try:
        node.run(["mkdir", "-p", f"{tmp}/etc/netplan"])
        node.put(f"{tmp}/etc/netplan/60-cephkvm.yaml", text, mode="0600")
        result = node.run(["netplan", "generate", "--root-dir", tmp], check=False)
        if result.exit_code != 0:
            raise Failure(
                f"{props['node']}: netplan rejects the bridge {props['name']}: "
                f"{result.stderr.strip()}"
            )
    finally:
        node.run(["rm", "-rf", "--", tmp])
    if _mode(node, props) == "netplan":
        node.run(["mkdir", "-p", RUN_DIR], change=True)
        node.put(f"{RUN_DIR}/{props['name']}.netplan", text, mode="0600")
        node.run(
            [
                "sh",
                "-c",
                f"[ -e {q(netplan_path(props))} ] && cp "
                f"{q(netplan_path(props))} {q(RUN_DIR + '/' + props['name'])}.netplan-before"
                " || true",
            ],
            change=True,
        )


# --- apply with automatic rollback (guard_script: providers/bridge_scripts.py) ----------


def _apply_guarded(node: Session, props: dict, apply: str, rollback: str) -> None:
    name, timeout = props["name"], int(props.get("confirm_timeout", 30))
    d = f"{RUN_DIR}/{name}"
    node.run(["mkdir", "-p", RUN_DIR], change=True)
    node.run(["rm", "-rf", f"{d}.rc", f"{d}.state", f"{d}.log", f"{d}.decided"], change=True)
    node.put(f"{d}.apply", apply, mode="0700")
    node.put(f"{d}.rollback", rollback, mode="0700")
    node.put(f"{d}.guard", guard_script(timeout, name), mode="0700")
    node.run(["setsid", "-f", "sh", f"{d}.guard"], change=True)
    deadline = time.monotonic() + timeout - 2
    rc = None
    while time.monotonic() < deadline:
        rc = _ask(node, ["sh", "-c", f"cat {q(d)}.rc 2>/dev/null"])
        if rc:
            break
        time.sleep(1)
    if rc == "0" and _ask(node, ["mkdir", f"{d}.decided"], change=True) is not None:
        return  # the node took a new connection after the change, before the guard gave up
    if rc:  # the apply script itself failed: roll back now, unless the guard already did
        _ask(
            node,
            ["sh", "-c", f"mkdir {q(d)}.decided && sh {q(d)}.rollback >> {q(d)}.log 2>&1"],
            change=True,
        )
        log = _ask(node, ["cat", f"{d}.log"]) or ""
        raise Failure(
            f"{props['node']}: applying bridge {name} failed (exit {rc}); "
            f"the previous network config is back. Log:\n{log[-1500:]}"
        )
    time.sleep(max(0.0, deadline + 2 - time.monotonic()) + 3)
    back = _ask(node, ["cat", f"{d}.state"])
    raise Failure(
        f"{props['node']}: after applying bridge {name} the controller could not open a new "
        f"connection to {node.host.address} within {timeout}s, so the node restored its "
        f"previous network config (node reachable again: {'yes, ' + back if back else 'no'})."
        f" Check the addresses and gateway given for {props['node']}."
    )


def _ask(node: Session, argv: list, change: bool = False) -> Optional[str]:
    """argv's stdout over the node's connection, asked only after a NEW TCP connection got
    sshd's banner (what a change that locks the controller out prevents; the login does not
    depend on the network); None when the node does not answer or argv fails. The check
    keeps the transport from waiting out, and giving up on, a node the change cut off."""
    if not _sshd_answers(node.host):
        return None
    try:
        result = node.run(argv, check=False, change=change, timeout=20)
    except TransportError:
        return None
    return result.stdout.strip() if result.exit_code == 0 else None


def _sshd_answers(host) -> bool:
    try:
        with socket.create_connection((host.address, host.port), timeout=2) as sock:
            sock.settimeout(5)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


# --- Ceph between nodes -----------------------------------------------------------------


# Health checks that mean the cluster has not got over a node's network blip yet.
def _wait_ceph_settled(node: Session, props: dict) -> None:
    """On a Ceph node, wait until each cluster it holds a config of has recovered from this
    node's network change before the next node's bridge is touched (the runbook: one node
    blipping at a time). Nodes without a Ceph config (no cluster yet) have nothing to wait
    for."""
    timeout = int(props.get("ceph_timeout", 300))
    for cluster in local_clusters(node):

        def settled():
            res = ceph(node, cluster, "health", "-f", "json", check=False, timeout=30)
            return res.exit_code == 0 and not ceph_facts.unsettled(res.stdout)

        base.wait_until(
            settled,
            timeout=timeout,
            interval=3,
            what=f"Ceph ({cluster}) to recover after the bridge change on {props['node']}",
        )


# --- libvirt network --------------------------------------------------------------------


def network_xml(props: dict) -> str:
    from xml.sax.saxutils import escape, quoteattr

    return (
        f"<network><name>{escape(props['network'])}</name><forward mode='bridge'/>"
        f"<bridge name={quoteattr(props['name'])}/></network>"
    )


def _ensure_network(node: Session, props: dict) -> bool:
    with libvirt_conn.connect(node) as conn:
        net = libvirt_conn.network(conn, props["network"])
        if net is None:
            net = conn.networkDefineXML(network_xml(props))
        if not net.isActive():
            net.create()
        net.setAutostart(1)
        return bool(net.isActive())


def _network_active(node: Session, props: dict):
    """True/False for the libvirt network, None when libvirtd cannot be asked."""
    try:
        with libvirt_conn.connect(node) as conn:
            net = libvirt_conn.network(conn, props["network"])
            return bool(net.isActive()) if net is not None else False
    except TransportError:
        return None


def _remove_network(node: Session, props: dict) -> None:
    if not props.get("network"):
        return
    with libvirt_conn.connect(node) as conn:
        net = libvirt_conn.network(conn, props["network"])
        if net is None:
            return
        if net.isActive():
            net.destroy()
        net.undefine()


class KvmBridge(pulumi.dynamic.Resource, module="cephkvm", name="KvmBridge"):
    applied_mode: pulumi.Output[str]
    mac: pulumi.Output[str]
    effective: pulumi.Output[dict]
    network_active: pulumi.Output[bool]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        outputs = {
            k: None for k in ("applied_mode", "mac", "previous", "effective", "network_active")
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["ssh_private_key"])
        )
        super().__init__(KvmBridgeProvider(), name, {**outputs, **props}, opts)
