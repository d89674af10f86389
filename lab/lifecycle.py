"""lab up / down / status."""

import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import time
from contextlib import contextmanager

from . import const, disks, net, node, ssh
from .util import log, parallel, sh


@contextmanager
def locked():
    """One up/down at a time."""
    const.STATE.mkdir(parents=True, exist_ok=True)
    (const.STATE / ".gitignore").write_text("*\n")
    with open(const.LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def load_inventory():
    try:
        return json.loads(const.INVENTORY.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- up


def up(nodes=3, disks_per_node=1, disk_size="10G", fresh=False, runbook=False):
    """The lab: nodes on one switch reached as root, or with runbook=True the runbook's
    layout: a second switch for Ceph's public network and the service account `cephsvc`
    (passwordless sudo) instead of root."""
    size = disks.parse_size(disk_size)  # validate everything before touching the host
    if nodes < 1 or disks_per_node < 0:
        raise ValueError("need --nodes >= 1 and --disks-per-node >= 0")
    const.address(nodes)
    with locked():
        inv = load_inventory()
        if (
            not fresh
            and inv
            and _shape(inv) == (nodes, disks_per_node, size, topology(runbook))
            and all(r["ok"] for r in _status(inv))
        ):
            log("lab already up")
            return inv
        if inv:
            log("recreating the lab (other shape, not healthy, or --fresh): node data is wiped")
        t0 = time.monotonic()
        net.add_cover_route()  # first: from here on lab addresses never leave the host
        _teardown()  # leftovers of an earlier or crashed lab
        inv = _build(nodes, disks_per_node, size, runbook)
        log(f"up: {nodes} nodes in {time.monotonic() - t0:.1f}s")
        return inv


def topology(runbook: bool) -> str:
    return "runbook" if runbook else "single"


def _shape(inv):
    """(nodes, disks per node, disk size, topology) of an existing lab, read from what is
    there."""
    ns = inv["nodes"]
    try:
        size = (const.node_dir(ns[0]["name"]) / "disks" / "disk0.img").stat().st_size
    except (IndexError, OSError):
        size = None
    shape = inv.get("vars", {}).get("topology", "single")
    return (len(ns), len(ns[0]["disks"]) if ns else 0, size, shape)


def _build(count, disks_per_node, size, runbook=False):
    client_pub = ssh.client_key()
    names = [f"node{i}" for i in range(1, count + 1)]
    user = const.SERVICE_USER if runbook else "root"
    nodes = [
        {
            "name": n,
            "address": const.address(i),
            **({"ceph_address": const.address(i, 10)} if runbook else {}),
            "port": 22,
            "user": user,
        }
        for i, n in enumerate(names, 1)
    ]
    net.make_bridge()
    if runbook:
        net.make_bridge(const.CEPH_BRIDGE, address=None)
    for n in nodes:
        net.make_node_net(n["name"], n["address"])
        if runbook:
            net.add_ceph_link(n["name"], n["ceph_address"])
    # Laying out trees and keys is file work: threads overlap the cp/ssh-keygen calls.
    keys = parallel(
        lambda n: node.prepare(n["name"], n["address"], nodes, client_pub, runbook), nodes
    )
    for n, key in zip(nodes, keys):
        n["host_key"] = key
        n["disks"] = disks.create(n["name"], disks_per_node, size)
    ssh.write_known_hosts(nodes)
    _start_all(names)
    parallel(_wait_ready, nodes)
    node.save_caps_cache(names[0])
    # What a stack's cephkvm:inventory reads (providers/schema/node.py Inventory), and
    # nothing else: the lab's tests and benches read it too.
    inv = {
        "nodes": nodes,
        "ssh": {"key_file": str(const.CLIENT_KEY), "known_hosts": str(const.KNOWN_HOSTS)},
        "public_network": const.CEPH_SUBNET if runbook else const.SUBNET,
        "vars": {**stack_vars(client_pub), "topology": topology(runbook)},
    }
    tmp = const.INVENTORY.with_suffix(".tmp")
    tmp.write_text(json.dumps(inv, indent=2) + "\n")
    tmp.replace(const.INVENTORY)  # atomic: the inventory exists only for a complete lab
    return inv


def stack_vars(client_pub: str) -> dict:
    """`{inventory:NAME}` in the lab's stack config: the lab's own client key, its guest
    image (the build `lab-guest.qcow2` links to: a rebuilt image is a new template) and the
    guest's address (host 100 of this lab instance's subnet)."""
    from lab import guest_image

    net = ipaddress.ip_network(const.SUBNET)
    image = guest_image.cache_dir() / guest_image.LATEST
    return {
        "client_key": client_pub,
        "guest_address": f"{net[100]}/{net.prefixlen}",
        **({"guest_image": str(image.resolve())} if image.exists() else {}),
    }


def _start_all(names):
    procs = {n: node.start(n) for n in names}
    for name, proc in procs.items():
        if proc.wait(timeout=120) != 0:
            tail = (const.node_dir(name) / "init.log").read_text()[-2000:]
            raise RuntimeError(f"{name}: start failed ({proc.returncode}):\n{tail}")


def _wait_ready(n, timeout=60):
    """sshd accepts, then the node's libvirtd answers through it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((n["address"], 22), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n['name']}: sshd not listening on {n['address']}:22")
            time.sleep(0.05)
    # `capabilities` makes libvirt probe every QEMU binary now rather than on first use.
    sudo = "" if n.get("user", "root") == "root" else "sudo -n "
    probe = f"hostname && {sudo}virsh -c qemu:///system capabilities >/dev/null"
    res = ssh.run(n, probe, timeout=timeout)
    if res.returncode != 0 or res.stdout.strip() != n["name"]:
        raise RuntimeError(f"{n['name']}: not ready: {res.stdout.strip()} {res.stderr.strip()}")


# ---------------------------------------------------------------- down


def down():
    with locked():
        t0 = time.monotonic()
        killed = _teardown()
        net.del_cover_route()  # last: nothing with a lab address is left to leak
        _wait_reaped(killed)
        left = leftovers()
        log(f"down in {time.monotonic() - t0:.1f}s" + (f"; LEFT: {left}" if left else ""))
        return left


def _teardown():
    """Everything but the cover route, in the order that never blocks: guests, then
    CephFS mounts (ceph-fuse then exits), then SIGKILL what is left, then the plumbing."""
    const.INVENTORY.unlink(missing_ok=True)
    if const.NODES_DIR.is_dir():
        parallel(ssh.close_master, [d.name for d in const.NODES_DIR.iterdir()])
    killed = sum(parallel(_stop_node, net.lab_netns()), [])
    disks.detach_all()
    net.delete_all()
    _remove_state()
    return killed


def _stop_node(ns):
    guests = _has_qemu(ns)
    for pid in _mount_ns_leaders(ns):  # the node's own, plus any `ip netns exec` shells
        if guests:
            _destroy_guests(pid)
        _unmount_fuse(pid)
    killed, deadline = set(), time.monotonic() + 10
    while (pids := net.netns_pids(ns)) and time.monotonic() < deadline:
        for pid in pids:  # by namespace membership, never by name: the PID ns is shared
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return sorted(killed)


def _wait_reaped(pids, timeout=5):
    """The node daemons are orphans of PID 1, which on this machine reaps them only every
    second or so; wait until it has, so nothing (not even a zombie) is left after `down`."""
    deadline = time.monotonic() + timeout
    while (zombies := [p for p in pids if _is_zombie(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if zombies:
        log(f"{len(zombies)} killed processes not yet reaped by PID 1 (zombies, no resources)")


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _mount_ns_leaders(ns):
    """One pid per mount namespace in use inside netns ns, other than our own."""
    own = os.stat("/proc/self/ns/mnt").st_ino
    seen = {}
    for pid in net.netns_pids(ns):
        try:
            ino = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        except OSError:
            continue
        if ino != own:
            seen.setdefault(ino, pid)
    return list(seen.values())


def _has_qemu(ns):
    for pid in net.netns_pids(ns):
        try:
            if os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("qemu-system"):
                return True
        except OSError:
            pass
    return False


def _destroy_guests(pid):
    enter = ["nsenter", "-t", str(pid), "-m", "-u", "-n", "--"]
    out = sh(
        *enter, "virsh", "-c", "qemu:///system", "list", "--name", check=False, timeout=10
    ).stdout
    for dom in out.split():
        sh(*enter, "virsh", "-c", "qemu:///system", "destroy", dom, check=False, timeout=10)


def _unmount_fuse(pid):
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            rows = [line.split() for line in f]
    except OSError:
        return
    # mountinfo: field 4 is the mount point, the fs type follows the " - " separator.
    points = [r[4] for r in rows if r[r.index("-") + 1].startswith(("fuse", "ceph"))]
    for mp in reversed(points):
        sh("nsenter", "-t", str(pid), "-m", "--", "umount", "-l", mp, check=False, timeout=10)


def _remove_state():
    """Delete node trees and disk files, but never through a live mount."""
    prefix = str(const.NODES_DIR) + os.sep
    with open("/proc/self/mounts") as f:
        mounted = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    if mounted:
        raise RuntimeError(f"refusing to delete {const.NODES_DIR}: mounted: {mounted}")
    shutil.rmtree(const.NODES_DIR, ignore_errors=True)
    const.KNOWN_HOSTS.unlink(missing_ok=True)


def leftovers():
    """What the lab left on the machine; empty after a clean down."""
    left = [f"netns {n}" for n in net.lab_netns()]
    left += [f"link {n}" for n in net.lab_links()]
    left += [f"loop {d} ({f})" for d, f in disks.lab_loops()]
    if net.cover_route_present():
        left.append(f"route unreachable {const.COVER}")
    left += [f"process {p}" for p in _processes_using_state()]
    if const.NODES_DIR.exists():
        left.append(f"dir {const.NODES_DIR}")
    return left


def _processes_using_state():
    """Processes whose command line names the state dir (e.g. a stray node sshd)."""
    me, found = os.getpid(), []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == me:
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                # STATE plus a separator: .lab must not match another instance's .lab1.
                if (str(const.STATE) + os.sep).encode() in f.read():
                    found.append(int(p))
        except OSError:
            pass
    return found


# ---------------------------------------------------------------- status


def status():
    """(rows, ok). A lab without inventory is down."""
    inv = load_inventory()
    if not inv:
        return [], False
    rows = _status(inv)
    return rows, bool(rows) and all(r["ok"] for r in rows) and net.cover_route_present()


def _status(inv):
    present = set(net.lab_netns())

    def one(n):
        row = {"name": n["name"], "netns": const.netns(n["name"]) in present}
        sudo = "" if n.get("user", "root") == "root" else "sudo -n "
        res = (
            ssh.run(
                n,
                f"hostname; {sudo}virsh -c qemu:///system version >/dev/null && echo virt-ok",
                timeout=30,
            )
            if row["netns"]
            else None
        )
        out = res.stdout.split() if res else []
        row["sshd"] = bool(out) and out[0] == n["name"]
        row["libvirtd"] = "virt-ok" in out
        row["disks"] = {d: _loop_ok(n["name"], d) for d in n["disks"]}
        row["ok"] = row["netns"] and row["sshd"] and row["libvirtd"] and all(row["disks"].values())
        return row

    return parallel(one, inv["nodes"])


def _loop_ok(name, dev):
    prefix = str(const.node_dir(name)) + os.sep
    return any(
        d == dev and f.startswith(prefix) and not f.endswith("(deleted)")
        for d, f in disks.lab_loops()
    )
