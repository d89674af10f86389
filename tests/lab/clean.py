"""What a destroyed stack may leave on the lab: nothing of Ceph. A stack that leaves some
fails its test, naming what is left, and the lab is rebuilt so the next stack does not
inherit it (one crash test's leftover mon store failed every later bring-up in CI:
51 errors from one cause)."""

import pytest

import lab
from lab import lifecycle

DAEMONS = ("ceph-mon", "ceph-mgr", "ceph-mds", "ceph-osd", "ceph-fuse")
# What a destroyed stack must not leave: daemons of this node (the PID namespace is shared,
# the mount namespace is not), their data, the cluster's identity and credentials, CephFS
# mounts.
LEFT = (
    'for p in /proc/[0-9]*; do [ "$(readlink $p/ns/mnt)" = "$(readlink /proc/self/ns/mnt)" ] '
    "&& cat $p/comm; done 2>/dev/null | grep -xE '" + "|".join(DAEMONS) + "'; "
    "find /var/lib/ceph/mon /var/lib/ceph/mgr /var/lib/ceph/mds /var/lib/ceph/osd "
    "/var/lib/ceph/cephkvm /var/lib/ceph/bootstrap-osd -mindepth 1 -maxdepth 1 2>/dev/null; "
    "ls -d /etc/ceph/*.conf /etc/ceph/*.keyring 2>/dev/null; "
    "grep -E ' (fuse|fuse\\.ceph-fuse|ceph) ' /proc/self/mounts; true"
)


def left_on_nodes() -> dict:
    """node -> what of Ceph it still holds (processes, paths, mount lines)."""
    inv = lab.inventory() or {"nodes": []}
    left = {}
    for node in inv["nodes"]:
        proc = lab.run(node, LEFT, timeout=60)
        found = proc.stdout.split("\n") if proc.returncode == 0 else [f"unreadable: {proc}"]
        if any(line.strip() for line in found):
            left[node["name"]] = [line for line in found if line.strip()]
    return left


def rebuild() -> None:
    """The same lab again, on fresh disks and node trees (a few seconds)."""
    count, per_node, size = lifecycle._shape(lab.inventory())
    lab.up(nodes=count, disks_per_node=per_node, disk_size=str(size), fresh=True)


def assert_left_clean(where: str) -> None:
    left = left_on_nodes()
    if left:
        rebuild()
        pytest.fail(f"{where} left Ceph on the lab (the lab was rebuilt): {left}")
