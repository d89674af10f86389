"""Service manager: systemd units where systemd runs, direct daemons where it does not.

Nodes without systemd (the lab, containers) share one PID namespace with other nodes, so a
direct daemon is tracked by its pid file and never found or stopped by name.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from providers.base import wait_until
from providers.transport import Session


@dataclass(frozen=True)
class Daemon:
    """One service: its systemd unit, and how to start it directly."""

    unit: str
    argv: tuple  # direct start; must daemonize and write pid_file
    pid_file: str
    exe: str = ""  # the running binary (or a link to it), when argv starts it through a wrapper

    @property
    def binary(self) -> str:
        return self.exe or self.argv[0]


LIBVIRTD = Daemon("libvirtd", ("/usr/sbin/libvirtd", "-d"), "/run/libvirtd.pid")
VIRTLOGD = Daemon("virtlogd", ("/usr/sbin/virtlogd", "-d"), "/run/virtlogd.pid")


SAME_NODE = '[ "$(readlink /proc/$pid/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ]'


def has_systemd(node: Session) -> bool:
    """Asked once per node and run: every daemon helper needs it."""
    return node.fact("systemd", lambda: node.ok(["test", "-d", "/run/systemd/system"]))


def is_running(node: Session, daemon: Daemon, systemd: bool) -> bool:
    if systemd:
        return node.ok(["systemctl", "is-active", "--quiet", daemon.unit])
    # The pid file must name a live process whose command is the daemon's binary, in this
    # node's mount namespace: PIDs are shared between lab nodes, so a stale pid file may name
    # another node's copy of the same daemon.
    script = (
        f'pid=$(cat {shlex.quote(daemon.pid_file)} 2>/dev/null) && [ -n "$pid" ] && '
        f'[ "$(readlink /proc/$pid/exe)" = "$(readlink -f {shlex.quote(daemon.binary)})" ] '
        f"&& {SAME_NODE}"
    )
    return node.ok(["sh", "-c", script])


def release(node: Session, daemon: Daemon, systemd: bool) -> None:
    """Undo stop(hold=True): a masked unit cannot start, not even a new OSD's of that id."""
    if systemd:
        node.run(["systemctl", "unmask", daemon.unit], change=True)


def start(node: Session, daemon: Daemon, systemd: bool) -> None:
    if systemd:
        release(node, daemon, systemd)
        node.run(["systemctl", "enable", "--now", daemon.unit], change=True)
    else:
        node.run(list(daemon.argv), change=True)


def stop(node: Session, daemon: Daemon, systemd: bool, hold: bool = False) -> None:
    """hold: it stays stopped across a reboot even when something else starts it at boot
    (ceph-volume's lvm trigger starts its OSD): masked until start."""
    if systemd:
        node.run(["systemctl", "disable", "--now", daemon.unit], change=True)
        if hold:
            node.run(["systemctl", "mask", daemon.unit], change=True)
        return
    script = (
        f"pid=$(cat {shlex.quote(daemon.pid_file)} 2>/dev/null) || exit 0; "
        f'[ "$(readlink /proc/$pid/exe)" = "$(readlink -f {shlex.quote(daemon.binary)})" ] '
        f"&& {SAME_NODE} "
        f"|| {{ rm -f {shlex.quote(daemon.pid_file)}; exit 0; }}; "
        'kill "$pid"; for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; '
        'sleep 0.1; done; kill -0 "$pid" 2>/dev/null && kill -9 "$pid"; '
        f"rm -f {shlex.quote(daemon.pid_file)}"
    )
    node.run(["sh", "-c", script], change=True)


# --- Ceph daemons -----------------------------------------------------------------------
# Ceph writes pid files only when ceph.conf sets `pid_file` (CephCluster writes
# `pid_file = /run/ceph/$cluster-$name.pid`); the path below must agree with it.
CEPH_KINDS = ("mon", "mgr", "mds", "osd")


def ceph_daemon(kind: str, ident: str, cluster: str = "ceph") -> Daemon:
    """A Ceph daemon: unit `ceph-KIND@ID` under systemd, else the binary run as user ceph."""
    if kind not in CEPH_KINDS:
        raise ValueError(f"unknown ceph daemon kind {kind!r}")
    return Daemon(
        unit=f"ceph-{kind}@{ident}",
        argv=(
            f"/usr/bin/ceph-{kind}",
            "--cluster",
            cluster,
            "-i",
            str(ident),
            "--setuser",
            "ceph",
            "--setgroup",
            "ceph",
        ),
        pid_file=f"/run/ceph/{cluster}-{kind}.{ident}.pid",
    )


def ensure_running(node: Session, daemon: Daemon, systemd: bool, timeout: float = 30) -> bool:
    """Start daemon unless it runs; True when it was started. Never starts a second copy."""
    if is_running(node, daemon, systemd):
        return False
    start(node, daemon, systemd)
    wait_until(
        lambda: is_running(node, daemon, systemd),
        timeout=timeout,
        interval=0.5,
        what=f"{daemon.unit} to start on {node.name}",
        report=lambda: f"See the daemon's log on {node.name}.",
    )
    return True
