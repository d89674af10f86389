"""The lab switch: a bridge in the root namespace, one veth per node namespace.

Network rule: lab addresses must never leave through the machine's default route. The
`unreachable` route for COVER is added before anything else exists and removed after
everything else is gone; the bridge's connected /24 is more specific, so while the bridge
exists lab traffic goes to it, and at every other moment it is rejected locally.
Nodes get no default route and nothing forwards (no ip_forward, no NAT).
"""

import os

from . import const
from .util import sh


def add_cover_route():
    sh("ip", "route", "replace", "unreachable", const.COVER)


def del_cover_route():
    sh("ip", "route", "del", "unreachable", const.COVER, check=False)


def cover_route_present() -> bool:
    out = sh("ip", "route", "show", "type", "unreachable", const.COVER, check=False).stdout
    return const.COVER.split("/")[0] in out


def make_bridge(name: str = const.BRIDGE, address: str | None = const.HOST_ADDR):
    sh("ip", "link", "add", name, "type", "bridge", "stp_state", "0")
    if address:
        sh("ip", "addr", "add", f"{address}/{const.PREFIXLEN}", "dev", name)
    sh("ip", "link", "set", name, "up")


def make_node_net(node: str, addr: str):
    ns, veth = const.netns(node), const.veth(node)
    sh("ip", "netns", "add", ns)
    # Create the pair with its peer already inside the namespace, named eth0 there.
    sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "link", "set", veth, "master", const.BRIDGE, "up")
    sh("ip", "-n", ns, "addr", "add", f"{addr}/{const.PREFIXLEN}", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")


def add_ceph_link(node: str, addr: str):
    """The runbook topology's second interface: eth1 on the Ceph switch."""
    ns, veth = const.netns(node), const.ceph_veth(node)
    sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth1", "netns", ns)
    sh("ip", "link", "set", veth, "master", const.CEPH_BRIDGE, "up")
    sh("ip", "-n", ns, "addr", "add", f"{addr}/{const.PREFIXLEN}", "dev", "eth1")
    sh("ip", "-n", ns, "link", "set", "eth1", "up")


def lab_netns() -> list:
    out = sh("ip", "netns", "list", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(const.PREFIX + "-")]


def lab_links() -> list:
    out = sh("ip", "-o", "link", "show", check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    bridges = (const.BRIDGE, const.CEPH_BRIDGE)
    return [n for n in names if n.startswith(const.PREFIX + "-") or n in bridges]


def netns_pids(ns: str) -> list:
    out = sh("ip", "netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def in_netns(pid: int, ns: str) -> bool:
    """True if pid lives in lab namespace ns (guards against stale pid files)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return False


def delete_all():
    """Remove every lab namespace and link (veths die with their namespace)."""
    for ns in lab_netns():
        sh("ip", "netns", "delete", ns, check=False)
    for link in lab_links():
        sh("ip", "link", "delete", link, check=False)
