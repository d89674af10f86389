"""KVM on the lab through the real engine: bridges over eth0, a VM from the lab guest image
with cloud-init, a live memory change, a live migration, and a broken bridge that rolls
itself back. Guests are always torn down (QEMU sits outside the session's memory limits)."""

import copy
import ipaddress
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

import lab
from providers import base
from tests.cli import Project
from tests.lab.test_ceph_crash_lab import stop_language_hosts

pytestmark = pytest.mark.lab
if os.geteuid() != 0 or not lab.inventory():
    pytest.skip("needs root and a running lab (make test brings it up)", allow_module_level=True)

GUEST_IMAGE = os.path.expanduser("~/.cache/cephkvm-images/lab-guest.qcow2")
if not os.path.exists(GUEST_IMAGE):
    pytest.skip("no lab guest image: run `make guest-image`", allow_module_level=True)

VM = "lab-vm1"
NODES = [n["name"] for n in lab.inventory()["nodes"]]
SUBNET = ipaddress.ip_network(lab.inventory()["public_network"])
GUEST = str(SUBNET.network_address + 100)
CLIENT_KEY = lab.inventory()["ssh"]["key_file"]


def vm_config(config) -> dict:
    return config["cephkvm:vms"][0]


def guest(node: str, command: str, timeout=20, address=GUEST):
    """command in the guest, over SSH from node (the guest's address is on the lab switch,
    reachable through the node's br0) with the key cloud-init installed."""
    argv = [
        "ssh",
        "-i",
        CLIENT_KEY,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
        f"debian@{address}",
        command,
    ]
    return lab.run(node, argv, timeout=timeout)


def defined_on(node: str) -> list:
    out = lab.run(node, ["virsh", "-c", "qemu:///system", "list", "--all", "--name"]).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def vm_state(project: Project) -> dict:
    """The CloudVM's outputs as the state holds them (what refresh updates)."""
    export = json.loads(project.run("stack", "export", "--stack", project.stack).stdout)
    return next(
        r["outputs"] for r in export["deployment"]["resources"] if r["urn"].endswith(f"::{VM}")
    )


def steps(project: Project) -> dict:
    preview = project.preview_json()
    return {s["urn"].rsplit("::", 1)[1]: s["op"] for s in preview["steps"]}


def assert_kvm_unchanged(project: Project) -> None:
    """A preview shows no change to this issue's resources (bridges and the VM). Other
    resources of the lab stack (Ceph) are their own tests' business."""
    changed = {
        name: op
        for name, op in steps(project).items()
        if op != "same" and (name.endswith("-br0") or name == VM)
    }
    assert changed == {}


def sweep():
    """Whatever a failed run left: the guest on any node, and br0 (eth0 gets its address
    back, in a detached shell since it moves the address SSH came in on)."""
    for n in lab.inventory()["nodes"]:
        lab.run(n, f"virsh destroy {VM}; virsh undefine {VM}", timeout=30)
        if lab.run(n, ["ip", "link", "show", "br0"]).returncode == 0:
            restore = (
                f"virsh net-destroy br0; virsh net-undefine br0; ip link set eth0 nomaster;"
                f" ip link del br0; ip addr replace {n['address']}/{SUBNET.prefixlen} "
                "dev eth0"
            )
            lab.run(n, ["setsid", "-f", "sh", "-c", restore + " >/dev/null 2>&1"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("kvm")
    project = Project(str(work), "lab")

    def configure(config):  # VM disks stay on the stack's CephFS (/mnt/cephfs)
        vm_config(config)["cloud_init"]["network_config"]["ethernets"]["eth0"]["addresses"] = [
            f"{GUEST}/{SUBNET.prefixlen}"
        ]

    project.edit_config(configure)
    try:
        t0 = time.monotonic()
        project.run("up", "--yes", "--skip-preview")
        print(f"up with bridges and a booted VM: {time.monotonic() - t0:.0f}s")
        yield project
    finally:
        project.run("destroy", "--yes", "--skip-preview", check=False)
        sweep()


def test_bridges_took_over_eth0_and_ssh_still_works(stack):
    for n in lab.inventory()["nodes"]:
        addrs = json.loads(lab.run(n, ["ip", "-j", "addr", "show", "dev", "br0"]).stdout)
        cidrs = [
            f"{a['local']}/{a['prefixlen']}" for a in addrs[0]["addr_info"] if a["family"] == "inet"
        ]
        assert cidrs == [f"{n['address']}/{SUBNET.prefixlen}"], n["name"]
        eth0 = json.loads(lab.run(n, ["ip", "-j", "link", "show", "dev", "eth0"]).stdout)[0]
        assert eth0["master"] == "br0"
        assert eth0["address"] == addrs[0]["address"], "the bridge keeps eth0's MAC"
    bridges = stack.outputs()["bridges"]
    assert sorted(bridges) == NODES and bridges["node1"]["br0"]["network_active"]


def test_vm_boots_from_overlay_with_cloud_init_hostname_and_key(stack):
    vm = stack.outputs()["vms"][VM]
    assert vm["host"] == "node1" and vm["state"] == "running"
    assert vm["ready"] is True and vm["cloud_init_errors"] == [], vm  # cloud-init finished
    assert GUEST in vm["addresses"], vm  # reported by the guest agent
    assert defined_on("node1") == [VM]
    info = json.loads(
        lab.run("node1", ["qemu-img", "info", "-U", "--output=json", vm["disk_path"]]).stdout
    )
    assert info["backing-filename"].endswith(".qcow2") and "/templates/" in info["backing-filename"]
    assert info["backing-filename-format"] == "qcow2"
    fstype = lab.run(
        "node1", ["findmnt", "-n", "-o", "FSTYPE", "--target", vm["disk_path"]]
    ).stdout.strip()
    assert fstype == "fuse.ceph-fuse", "the overlay and its template are on CephFS"
    res = guest("node1", "hostname")
    assert res.returncode == 0, res.stderr
    print(f"guest hostname over SSH with the cloud-init key: {res.stdout.strip()}")
    assert res.stdout.strip() == VM


def _virsh(uri: str, known_hosts: str, tmp_path) -> subprocess.CompletedProcess:
    """`virsh -c uri list` as an operator's machine runs it: libvirt's own ssh transport,
    with an ssh that trusts only known_hosts (a wrapper first in PATH)."""
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts + "\n")
    wrapper = tmp_path / "bin" / "ssh"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(
        f"#!/bin/sh\nexec /usr/bin/ssh -F /dev/null -i {CLIENT_KEY} -o IdentitiesOnly=yes "
        f"-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known} "
        '-o GlobalKnownHostsFile=/dev/null "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    argv = ["virsh", "-c", uri, "list", "--name"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_virsh_reaches_a_kvm_node_by_its_uri_output_and_pinned_host_key(stack, tmp_path):
    nodes = stack.outputs()["nodes"]
    host = stack.outputs()["vms"][VM]["host"]
    access = nodes[host]["libvirt"]
    got = _virsh(access["uri"], access["known_hosts"], tmp_path)
    assert got.returncode == 0, got.stderr
    assert VM in got.stdout.split()
    other = next(nodes[n]["libvirt"] for n in nodes if n != host)["known_hosts"].split(" ", 1)[1]
    forged = f"{access['known_hosts'].split(' ', 1)[0]} {other}"  # another node's key
    refused = _virsh(access["uri"], forged, tmp_path)
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr


def test_preview_right_after_up_and_refresh_shows_no_changes(stack):
    assert_kvm_unchanged(stack)
    stack.run("refresh", "--yes", "--skip-preview")
    assert_kvm_unchanged(stack)


def test_memory_change_is_an_update_applied_live(stack):
    stack.edit_config(lambda c: vm_config(c).update(memory_mib=224))
    assert steps(stack)[VM] == "update"
    uptime = float(guest("node1", "cat /proc/uptime").stdout.split()[0])
    stack.run("up", "--yes", "--skip-preview")
    xml = lab.run("node1", ["virsh", "dumpxml", "--inactive", VM]).stdout
    assert "<currentMemory unit='KiB'>229376</currentMemory>" in xml
    assert float(guest("node1", "cat /proc/uptime").stdout.split()[0]) > uptime, (
        "applied without a restart"
    )


def test_disk_grows_live_and_cloud_init_change_writes_a_new_seed(stack):
    before = stack.outputs()["vms"][VM]
    stack.edit_config(lambda c: vm_config(c).update(disk_gib=4))
    stack.edit_config(lambda c: vm_config(c)["cloud_init"].update(runcmd=["touch /run/x"]))
    assert steps(stack)[VM] == "update"
    stack.run("up", "--yes", "--skip-preview")
    size = guest("node1", "cat /sys/block/vda/size").stdout.strip()
    assert int(size) * 512 == 4 * 1024**3, "the guest sees the grown disk without a reboot"
    xml = lab.run("node1", ["virsh", "dumpxml", VM]).stdout
    assert before["disk_path"] in xml
    outs = json.loads(
        stack.run("stack", "output", "--json", "--show-secrets", "--stack", stack.stack).stdout
    )["vms"][VM]
    assert outs["uuid"] == before["uuid"], "updated, not replaced"
    assert outs["instance_id"] != before["instance_id"], "a new seed for the next boot"
    seed = lab.run(
        "node1",
        [
            "sh",
            "-c",
            "strings "
            + shlex.quote(
                before["disk_path"]
                .replace("/virtualmachines/", "/config/")
                .replace(".qcow2", "-seed.iso")
            )
            + " | grep -m1 "
            "instance-id",
        ],
    ).stdout
    assert outs["instance_id"] in seed


def test_new_host_is_a_live_migration(stack):
    before = float(guest("node1", "cat /proc/uptime").stdout.split()[0])
    stack.edit_config(lambda c: vm_config(c).update(node="node2"))
    assert steps(stack)[VM] == "update"
    t0 = time.monotonic()
    stack.run("up", "--yes", "--skip-preview")
    print(f"migration up: {time.monotonic() - t0:.1f}s")
    assert defined_on("node1") == []
    assert defined_on("node2") == [VM]
    after = guest("node2", "cat /proc/uptime")
    assert after.returncode == 0, after.stderr
    print(
        f"guest uptime {before:.1f}s before, {float(after.stdout.split()[0]):.1f}s after; "
        f"domains: node1 {defined_on('node1')}, node2 {defined_on('node2')}"
    )
    assert float(after.stdout.split()[0]) > before, "the guest kept running"
    assert stack.outputs()["vms"][VM]["host"] == "node2"
    assert_kvm_unchanged(stack)


def test_the_migration_bench_splits_a_moves_gap_on_the_lab(stack):
    """bench/migration_downtime.py measures one move and back, so it cannot rot: libvirt's
    figures, the probe's longest gap, QEMU's pause and the guest's first reply after it."""
    sys.path.insert(0, os.path.join(os.path.dirname(lab.__path__[0]), "bench"))
    import migration_downtime as bench

    home = stack.outputs()["vms"][VM]["host"]
    away = "node1" if home == "node2" else "node2"
    for node in (away, home):  # there and back: the tests below expect it where it was
        move = bench.move(stack, VM, GUEST, node)
        assert stack.outputs()["vms"][VM]["host"] == node
        assert 0 < move["downtime_ms"] <= move["total_ms"], move
        # No reply while the guest is paused: the probe's gap spans the pause.
        assert 0 < move["paused_ms"] <= move["ping_gap_ms"] + 5, move
        assert move["first_reply_ms"] >= 0, move


def test_migration_used_the_stacks_own_restricted_key(stack):
    auth = lab.run("node2", ["cat", "/root/.ssh/authorized_keys"]).stdout
    addresses = ",".join(n["address"] for n in lab.inventory()["nodes"])
    assert re.search(
        rf'^from="{re.escape(addresses)}",restrict ssh-ed25519 \S+ '
        r"cephkvm-migration@cephkvm-lab$",
        auth,
        re.M,
    ), auth
    with open(CLIENT_KEY) as f:
        controller_key = f.read().splitlines()[1]  # a line of the lab key's body
    for name in NODES:
        found = lab.run(name, ["grep", "-rlF", "-D", "skip", controller_key, "/root/.ssh", "/run"])
        assert found.stdout == "", f"the controller's key is on {name}: {found.stdout}"


def test_refresh_finds_a_vm_migrated_by_hand_and_up_moves_it_back(stack, tmp_path):
    node1 = lab.node("node1")
    pin = tmp_path / "known_hosts"  # under /tmp: node2 sees it
    pin.write_text(f"{node1['address']} {node1['host_key']}\n")
    uri = (
        f"qemu+libssh://root@{node1['address']}/system?keyfile={CLIENT_KEY}"
        f"&known_hosts={pin}&known_hosts_verify=normal&sshauth=privkey"
    )
    lab.run(
        "node2",
        [
            "virsh",
            "migrate",
            "--live",
            "--p2p",
            "--persistent",
            "--undefinesource",
            "--unsafe",
            VM,
            uri,
        ],
        check=True,
        timeout=120,
    )
    assert defined_on("node1") == [VM] and defined_on("node2") == []
    stack.run("refresh", "--yes", "--skip-preview")
    # Stack outputs change only on `up`; the resource's refreshed state shows it.
    assert vm_state(stack)["host"] == "node1", "refresh shows where it really is"
    assert steps(stack)[VM] == "update"
    stack.run("up", "--yes", "--skip-preview")
    assert defined_on("node1") == [] and defined_on("node2") == [VM]
    assert guest("node2", "true").returncode == 0
    assert_kvm_unchanged(stack)


def test_nics_are_added_and_removed_live(stack):
    stack.edit_config(lambda c: vm_config(c).update(nics=[{"bridge": "br0"}, {"network": "br0"}]))
    assert steps(stack)[VM] == "update"
    stack.run("up", "--yes", "--skip-preview")
    macs = stack.outputs()["vms"][VM]["macs"]
    assert len(macs) == 2
    seen = base.wait_until(
        lambda: macs[1] in guest("node2", "cat /sys/class/net/*/address").stdout,
        timeout=30,
        what="the guest to see its second NIC",
    )
    assert seen
    stack.edit_config(lambda c: vm_config(c).update(nics=[{"bridge": "br0"}]))
    stack.run("up", "--yes", "--skip-preview")
    assert base.wait_until(
        lambda: macs[1] not in guest("node2", "cat /sys/class/net/*/address").stdout,
        timeout=30,
        what="the second NIC to go",
    )
    assert guest("node2", "true").returncode == 0, "the first NIC kept working"


def test_broken_bridge_address_rolls_back_by_itself(stack):
    node3 = lab.node("node3")
    wrong = f"{SUBNET.network_address + 256 * 99 + 13}/24"  # not on the lab switch

    def broken(config):
        config["cephkvm:bridges"][0]["addresses"] = {"node3": [wrong]}

    stack.edit_config(broken)
    proc = stack.run("up", "--yes", "--skip-preview", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "restored its" in out and "node3" in out, out[-3000:]
    assert lab.run("node3", ["true"]).returncode == 0, "node3 still answers SSH"
    addrs = lab.run("node3", ["ip", "-o", "addr", "show", "dev", "br0"]).stdout
    assert f"{node3['address']}/" in addrs and wrong not in addrs
    stack.edit_config(lambda c: c["cephkvm:bridges"][0].pop("addresses"))
    assert_kvm_unchanged(stack)


def test_refresh_shows_a_stopped_bridge_network_and_up_restarts_it(stack):
    lab.run("node3", ["virsh", "net-destroy", "br0"], check=True)
    stack.run("refresh", "--yes", "--skip-preview")
    changed = [
        name
        for name, op in steps(stack).items()
        if op == "update" and (name.endswith("-br0") or name == VM)
    ]
    assert changed == ["node3-br0"]
    stack.run("up", "--yes", "--skip-preview")
    assert re.search(r"Active:\s+yes", lab.run("node3", ["virsh", "net-info", "br0"]).stdout)
    assert_kvm_unchanged(stack)


# --- maintenance ------------------------------------------------------------------------

CEPHFS_PROBE = """
import os, sys, time
path, stop, worst, n = '/mnt/cephfs/maintenance-probe', '/tmp/cephkvm-probe.stop', 0.0, 0
while not os.path.exists(stop):
    t0 = time.monotonic()
    with open(path, 'w') as f:
        f.write(str(n)); f.flush(); os.fsync(f.fileno())
    with open(path) as f:
        assert f.read() == str(n)
    worst, n = max(worst, time.monotonic() - t0), n + 1
    time.sleep(0.2)
print(worst, n)
"""


def ceph_json(*args):
    """A ceph question asked on node3, which stays in service throughout."""
    return json.loads(
        lab.run("node3", ["ceph", *args, "-f", "json"], check=True, timeout=60).stdout
    )


class PgPoller:
    """`ceph pg dump pgs_brief` every 0.5 s in a thread: every state seen, and the longest
    run of samples in which some PG was not active."""

    def __init__(self):
        self.states, self.samples, self.run, self.longest = set(), 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(0.5):
            got = lab.run("node3", ["ceph", "pg", "dump", "pgs_brief", "-f", "json"], timeout=30)
            if got.returncode != 0:
                continue
            doc = json.loads(got.stdout)
            states = {row["state"] for row in doc.get("pg_stats", doc)}
            self.states |= states
            self.samples += 1
            self.run = self.run + 1 if any(not s.startswith("active") for s in states) else 0
            self.longest = max(self.longest, self.run)

    def stop(self):
        self._stop.set()
        self._thread.join(60)


def _vm_to_the_active_mds(stack) -> str:
    """The node whose MDS is active, with the VM moved there (a plain migration): failing
    MDS daemons over until a chosen one wins depends on the mons' choice of standby."""

    def active():
        info = ceph_json("fs", "dump")["filesystems"][0]["mdsmap"]["info"].values()
        return next((i["name"] for i in info if i["state"] == "up:active"), None)

    node = base.wait_until(active, timeout=120, what="an active MDS")
    if stack.outputs()["vms"][VM]["host"] != node:
        stack.edit_config(lambda c: vm_config(c).update(node=node))
        stack.run("up", "--yes", "--skip-preview")
    return node


def _in_service(stack) -> None:
    stack.edit_config(lambda c: c.pop("cephkvm:maintenance", None))
    stack.run("up", "--yes", "--skip-preview", check=False)


def test_two_of_three_mon_nodes_in_maintenance_are_refused_before_anything_moves(stack):
    host = stack.outputs()["vms"][VM]["host"]
    stack.edit_config(lambda c: c.update({"cephkvm:maintenance": ["node1", "node2"]}))
    try:
        proc = stack.run("up", "--yes", "--skip-preview", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "would stop 2 of the 3 mons" in out, out[-2000:]
        assert "Traceback" not in out
    finally:
        stack.edit_config(lambda c: c.pop("cephkvm:maintenance", None))
    assert ceph_json("quorum_status")["quorum_names"] == NODES
    assert defined_on(host) == [VM]


class Watch:
    """While a cluster-wide change runs: the guest appends a timestamp to its disk every
    0.5 s, node3 writes and reads back a CephFS file every 0.2 s, and PgPoller samples the
    PG states. report() says the longest stalls; check() asserts what must hold."""

    def __init__(self, host: str):
        assert (
            guest(
                host,
                "nohup sh -c 'echo $$ > /var/tmp/ticker; while :; do "
                "date +%s.%N >> /var/tmp/ticks; sync; sleep 0.5; done' "
                ">/dev/null 2>&1 &",
            ).returncode
            == 0
        )
        self.uptime = float(guest(host, "cat /proc/uptime").stdout.split()[0])
        lab.run("node3", ["rm", "-f", "/tmp/cephkvm-probe.stop"])
        self.probe = subprocess.Popen(
            lab.ssh_argv("node3") + ["python3", "-c", shlex.quote(CEPHFS_PROBE)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pgs = PgPoller()

    def stop(self, host: str) -> str:
        """Stop the probes; the guest is asked on host (where it runs now)."""
        lab.run("node3", ["touch", "/tmp/cephkvm-probe.stop"])
        self.pgs.stop()
        out, _ = self.probe.communicate(timeout=60)
        assert out.strip(), "the CephFS probe on node3 failed (see its stderr above)"
        worst, count = out.split()
        lines = guest(
            host,
            "kill $(cat /var/tmp/ticker); cat /proc/uptime /var/tmp/ticks; rm -f /var/tmp/ticks",
        ).stdout.split()
        assert float(lines[0]) > self.uptime, "the guest kept running"
        ticks = [float(t) for t in lines[2:]]
        gap = max(b - a for a, b in zip(ticks, ticks[1:]))
        return (
            f"CephFS probe on node3: {count} writes, longest {float(worst):.2f}s; guest "
            f"disk writes: longest gap {gap:.2f}s; PG states seen: {sorted(self.pgs.states)}"
            f" in {self.pgs.samples} samples, longest run with a PG not active: "
            f"{self.pgs.longest} sample(s)"
        )

    def check(self) -> None:
        """No PG lost its data's availability (down, incomplete, below min_size: peered).
        Peering and activating after a daemon stops or returns are reported, not asserted:
        measured on the lab they last several samples (issue 11's open gap). `stale` only
        says the mons have not heard from a stopped primary yet, and `unknown` that a mgr
        which just took over has no OSD report yet (seen in CI during a rolling restart);
        the guest's and node3's writes are what measure availability then."""
        bad = [s for s in self.pgs.states if re.search(r"down|incomplete|peered", s)]
        assert not bad, bad


def test_maintenance_moves_the_vm_stops_the_nodes_daemons_and_brings_them_back(stack):
    """The node hosting the VM, a mon, an OSD and the active MDS goes into maintenance and
    back, while the guest writes to its disk and node3 reads and writes CephFS."""
    home = _vm_to_the_active_mds(stack)
    osd = next(i for i, o in base_osds().items() if o == home)
    watch = Watch(home)
    try:
        stack.edit_config(lambda c: c.update({"cephkvm:maintenance": [home]}))
        planned = {n: op for n, op in steps(stack).items() if op != "same"}
        assert planned == {
            "maintenance": "create",
            f"mon-{home}": "update",
            f"mgr-{home}": "update",
            f"mds-{home}": "update",
            osd_resource(home): "update",
            VM: "update",
        }, planned
        t0 = time.monotonic()
        stack.run("up", "--yes", "--skip-preview")
        entered = time.monotonic() - t0
        target = stack.outputs()["vms"][VM]["host"]
        assert target != home and defined_on(home) == [] and defined_on(target) == [VM]
        assert stack.outputs()["maintenance"] == [home]
        assert stack.outputs()["vms"][VM]["home"] == home
        assert home not in ceph_json("quorum_status")["quorum_names"]
        states = {o["osd"]: o["state"] for o in ceph_json("osd", "dump")["osds"]}
        assert "up" not in states[osd] and "noout" in states[osd], states
        assert not [i for i, st in states.items() if i != osd and "noout" in st], states
        assert ceph_json("mgr", "dump")["active_name"] != home
        mds = ceph_json("fs", "dump")["filesystems"][0]["mdsmap"]["info"].values()
        assert [i["name"] for i in mds if i["state"] == "up:active"] != [home]
        assert float(guest(target, "cat /proc/uptime").stdout.split()[0]) > watch.uptime
        assert_unchanged(stack)
        stack.run("refresh", "--yes", "--skip-preview")
        assert_unchanged(stack)  # stopped as asked is not drift

        stack.edit_config(lambda c: c.pop("cephkvm:maintenance"))
        t0 = time.monotonic()
        stack.run("up", "--yes", "--skip-preview")
        left = time.monotonic() - t0
        assert defined_on(home) == [VM] and defined_on(target) == []
        assert ceph_json("quorum_status")["quorum_names"] == NODES
        states = {o["osd"]: o["state"] for o in ceph_json("osd", "dump")["osds"]}
        assert all("up" in st and "noout" not in st for st in states.values()), states
        assert {row["state"] for row in ceph_json("pg", "dump", "pgs_brief")["pg_stats"]} == {
            "active+clean"
        }
        assert_unchanged(stack)
    except BaseException:
        _in_service(stack)
        raise
    finally:
        said = watch.stop(stack.outputs()["vms"][VM]["host"])
    print(f"maintenance of {home}: enter {entered:.0f}s, leave {left:.0f}s; {said}")
    watch.check()


def test_a_rolling_restart_restarts_every_daemon_one_node_at_a_time(stack):
    host = stack.outputs()["vms"][VM]["host"]
    pids = _daemon_pids()
    watch = Watch(host)
    try:
        stack.edit_config(lambda c: c["cephkvm:ceph"].update(restart="lab-1"))
        planned = {n: op for n, op in steps(stack).items() if op != "same"}
        daemons = [f"{k}-{n}" for k in ("mon", "mgr", "mds") for n in NODES]
        assert planned == dict.fromkeys(daemons + [osd_resource(n) for n in NODES], "update"), (
            planned
        )
        t0, logged = time.monotonic(), len(stack.ssh_log_lines())
        stack.run("up", "--yes", "--skip-preview")
        took = time.monotonic() - t0
        # a kind's daemons update side by side; the restarts themselves go one at a time
        stopped, most = _stops(stack.ssh_log_lines()[logged:])
        assert set(stopped) == set(pids) and most == 1, (stopped, most)
        after = _daemon_pids()
        assert set(after) == set(pids) and not [d for d in pids if after[d] == pids[d]], (
            pids,
            after,
        )
        assert ceph_json("quorum_status")["quorum_names"] == NODES
        assert {row["state"] for row in ceph_json("pg", "dump", "pgs_brief")["pg_stats"]} == {
            "active+clean"
        }
        assert_unchanged(stack)
    finally:
        said = watch.stop(host)
    print(f"rolling restart of {len(pids)} daemons: {took:.0f}s; {said}")
    watch.check()


_STOP = re.compile(r"^change \S+ sh -c .*/run/ceph/ceph-(\w+\.\w+)\.pid.* kill ")
_START = re.compile(r"^change \S+ /usr/bin/ceph-(mon|mgr|mds|osd) --cluster \S+ -i (\w+)")


def _stops(lines: list) -> tuple[list, int]:
    """From the commands an `up` ran (a stop takes a daemon down, its start brings it back):
    the daemons stopped, and the most that were down at once."""
    stopped, down, most = [], set(), 0
    for line in lines:
        if m := _START.match(line):
            down.discard(f"{m[1]}.{m[2]}")
        elif m := _STOP.match(line):
            stopped.append(m[1])
            down.add(m[1])
            most = max(most, len(down))
    return stopped, most


def _daemon_pids() -> dict:
    """Each Ceph daemon of the lab (mon, mgr, mds, osd: kind.id) -> its pid, from its
    node's pid file (ceph-fuse clients write theirs there too)."""
    found = {}
    for n in NODES:
        out = lab.run(
            n, "for f in /run/ceph/ceph-m*.pid /run/ceph/ceph-osd.*.pid; do echo $f $(cat $f); done"
        ).stdout
        for line in out.splitlines():
            path, pid = line.split()
            found[path.rsplit("/ceph-", 1)[1][:-4]] = pid
    return found


def osd_resource(node: str) -> str:
    """The CephOsd of the node's lab disk (named after the device: osd-node2-loop1)."""
    return f"osd-{node}-{os.path.basename(lab.node(node)['disks'][0])}"


def base_osds() -> dict:
    """osd id -> its host, from the cluster."""
    tree = ceph_json("osd", "tree")["nodes"]
    hosts = {c: n["name"] for n in tree if n["type"] == "host" for c in n["children"]}
    return {n["id"]: hosts[n["id"]] for n in tree if n["type"] == "osd"}


def assert_unchanged(stack) -> None:
    changed = {name: op for name, op in steps(stack).items() if op != "same"}
    assert changed == {}, changed


VM2 = "lab-vm2"


def _with_vm2(config) -> None:
    second = copy.deepcopy(vm_config(config))
    second.update(name=VM2, node="node2")
    second["cloud_init"]["hostname"] = VM2
    second["cloud_init"]["network_config"]["ethernets"]["eth0"]["addresses"] = [
        f"{SUBNET.network_address + 101}/{SUBNET.prefixlen}"
    ]
    config["cephkvm:vms"].append(second)


def _without_vm2(config) -> None:
    config["cephkvm:vms"] = [v for v in config["cephkvm:vms"] if v["name"] != VM2]


SNAPSHOT, RESTORED = "before-rm", "lab-vm3"
RESTORED_ADDRESS = str(SUBNET.network_address + 102)
MARKER = "/var/tmp/cephkvm-marker"


def _booted(node: str, address=GUEST) -> tuple[str, float]:
    """The guest's boot id and uptime: the same boot id with more uptime is a guest that
    kept running."""
    out = guest(node, "cat /proc/sys/kernel/random/boot_id /proc/uptime", address=address)
    assert out.returncode == 0, out.stderr
    boot_id, uptime = out.stdout.split("\n", 1)
    return boot_id, float(uptime.split()[0])


def _with_restored(config) -> None:
    restored = copy.deepcopy(vm_config(config))
    restored.pop("snapshots", None)
    restored.update(
        name=RESTORED, node="node2", template={"snapshot": f"{VM}@{SNAPSHOT}"}, keep_disk=False
    )
    restored["cloud_init"]["hostname"] = RESTORED
    restored["cloud_init"]["network_config"]["ethernets"]["eth0"]["addresses"] = [
        f"{RESTORED_ADDRESS}/{SUBNET.prefixlen}"
    ]
    config["cephkvm:vms"].append(restored)


def _without_snapshots(config) -> None:
    config["cephkvm:vms"] = [v for v in config["cephkvm:vms"] if v["name"] != RESTORED]
    for field in ("snapshots", "rollback_to", "allow_rollback"):
        vm_config(config).pop(field, None)


def test_a_snapshot_taken_live_survives_a_migration_and_restores_into_a_new_vm(stack):
    host = stack.outputs()["vms"][VM]["host"]
    snap_dir = f"/mnt/cephfs/virtualmachines/.snap/{VM}@{SNAPSHOT}"
    assert guest(host, f"echo kept | sudo tee {MARKER} && sync").returncode == 0
    boot, before = _booted(host)
    stack.edit_config(lambda c: vm_config(c).update(snapshots=[SNAPSHOT]))
    try:
        changed = {k: op for k, op in steps(stack).items() if op != "same"}
        assert changed == {f"{VM}@{SNAPSHOT}": "create"}, changed
        stack.run("up", "--yes", "--skip-preview")
        taken = stack.outputs()["vms"][VM]["snapshots"][SNAPSHOT]
        print(f"snapshot: {taken}")
        assert taken["consistency"] == "quiesced"
        assert lab.run("node3", ["test", "-f", f"{snap_dir}/{VM}.qcow2"]).returncode == 0
        assert guest(host, f"sudo rm {MARKER} && sync").returncode == 0
        # A live migration moves the VM, never its snapshots.
        other = "node1" if host != "node1" else "node2"
        stack.edit_config(lambda c: vm_config(c).update(node=other))
        stack.run("up", "--yes", "--skip-preview")
        assert steps(stack).get(f"{VM}@{SNAPSHOT}", "same") == "same"
        assert _booted(other)[0] == boot and _booted(other)[1] > before, "the guest kept running"
        stack.edit_config(_with_restored)
        stack.run("up", "--yes", "--skip-preview")
        kept = guest("node2", f"cat {MARKER}", address=RESTORED_ADDRESS)
        assert kept.returncode == 0 and kept.stdout.strip() == "kept", kept.stderr
        assert guest(other, f"test -e {MARKER}").returncode == 1, "the original has it deleted"
        assert _booted(other)[0] == boot
        assert_unchanged(stack)
        # Rolled back in place (opt-in): the file is back, the disk it had is kept beside.
        stack.edit_config(lambda c: vm_config(c).update(rollback_to=SNAPSHOT, allow_rollback=True))
        assert steps(stack)[VM] == "update"
        stack.run("up", "--yes", "--skip-preview")
        assert guest(other, f"cat {MARKER}").stdout.strip() == "kept"
        assert _booted(other)[0] != boot, "it restarted from the snapshot's disk"
        kept = lab.run(other, f"ls /mnt/cephfs/virtualmachines/{VM}.qcow2.before-rollback-*")
        assert kept.returncode == 0, kept.stderr
    finally:
        lab.run("node3", f"rm -f /mnt/cephfs/virtualmachines/{VM}.qcow2.before-rollback-*")
        stack.edit_config(_without_snapshots)
        stack.run("up", "--yes", "--skip-preview", check=False)
        lab.run("node2", f"virsh destroy {RESTORED}; virsh undefine {RESTORED}", timeout=30)
    assert lab.run("node3", ["test", "-e", snap_dir]).returncode != 0, "the snapshot is gone"
    assert RESTORED not in defined_on("node2")
    assert guest(other, "true").returncode == 0, "the source VM still runs"


BACKUPS = "/mnt/cephfs/backups"


def _restored_from(template: dict):
    def edit(config) -> None:
        _with_restored(config)
        config["cephkvm:vms"][-1]["template"] = template

    return edit


def _without_backups(config) -> None:
    config["cephkvm:vms"] = [v for v in config["cephkvm:vms"] if v["name"] != RESTORED]
    vm_config(config).pop("backup", None)


def test_full_then_incremental_backups_of_a_running_vm_restore_into_a_new_vm(stack):
    host = stack.outputs()["vms"][VM]["host"]
    assert guest(host, "echo first | sudo tee /var/tmp/first && sync").returncode == 0
    boot, before = _booted(host)
    stack.edit_config(lambda c: vm_config(c).update(backup={"target": BACKUPS, "keep": 3}))
    try:
        stack.run("up", "--yes", "--skip-preview")
        full = stack.outputs()["vms"][VM]["last_backup"]
        write = "sudo dd if=/dev/urandom of=/var/tmp/second bs=1M count=16 status=none && sync"
        assert guest(host, write, timeout=60).returncode == 0
        digest = guest(host, "sha256sum /var/tmp/second").stdout.split()[0]
        stack.edit_config(lambda c: vm_config(c)["backup"].update(now="2"))
        assert steps(stack).get(f"{VM}-backup") == "update"
        stack.run("up", "--yes", "--skip-preview")
        incremental = stack.outputs()["vms"][VM]["last_backup"]
        print(f"full backup: {full}\nincremental backup: {incremental}")
        assert (full["kind"], incremental["kind"]) == ("full", "incremental")
        assert full["consistency"] == incremental["consistency"] == "quiesced"
        assert incremental["bytes"] < full["bytes"] / 4, "the incremental holds what changed"
        assert 16 << 20 < incremental["bytes"], "and at least the 16 MiB written"
        assert _booted(host)[0] == boot and _booted(host)[1] > before, "the guest kept running"
        stack.edit_config(_restored_from({"backup": incremental["file"]}))
        stack.run("up", "--yes", "--skip-preview")
        got = guest(
            "node2", "cat /var/tmp/first; sha256sum /var/tmp/second", address=RESTORED_ADDRESS
        )
        assert got.returncode == 0, got.stderr
        assert got.stdout.split()[:2] == ["first", digest]
    finally:
        stack.edit_config(_without_backups)
        stack.run("up", "--yes", "--skip-preview", check=False)
        lab.run("node2", f"virsh destroy {RESTORED}; virsh undefine {RESTORED}", timeout=30)
    kept = lab.run("node3", ["ls", f"{BACKUPS}/{VM}"]).stdout.split()
    lab.run("node3", ["rm", "-rf", "--", BACKUPS])
    assert len(kept) == 2, f"a VM's backups outlive its backup policy: {kept}"


def test_scheduled_backups_run_on_the_vms_node_without_pulumi(stack):
    host = stack.outputs()["vms"][VM]["host"]
    policy = {"target": BACKUPS, "keep": 3, "every": "1m"}
    stack.edit_config(lambda c: vm_config(c).update(backup=policy))
    try:
        planned = {n: op for n, op in steps(stack).items() if op != "same"}
        schedules = {f"{n}-backup-schedule": "create" for n in NODES}
        assert planned == {f"{VM}-backup": "create", **schedules}, planned
        stack.run("up", "--yes", "--skip-preview")

        def taken():
            listed = lab.run(host, f"ls {BACKUPS}/{VM}/ 2>/dev/null").stdout.split()
            return len([f for f in listed if f.endswith(".qcow2")]) >= 2

        # `up` took the first; the node's own schedule takes the next once it is a minute old
        base.wait_until(taken, timeout=300, interval=2, what="a scheduled backup")
        stack.run("refresh", "--run-program", "--yes", "--skip-preview")  # outputs too
        out = stack.outputs()["vms"][VM]
        scheduled = out["scheduled_backup"]
        assert scheduled["ok"] and scheduled["node"] == host, scheduled
        assert scheduled["backup"]["kind"] == "incremental", scheduled
        assert scheduled["backup"]["consistency"] == "quiesced", scheduled
        assert scheduled["backup"]["file"] in [b["file"] for b in out["backups"]]

        stack.edit_config(lambda c: vm_config(c)["backup"].pop("every"))
        stack.run("up", "--yes", "--skip-preview")
        for n in NODES:  # every node's schedule is gone with the last `every`
            assert lab.run(n, ["test", "-e", "/run/cephkvm-backup.pid"]).returncode != 0, n
    finally:
        stack.edit_config(_without_backups)
        stack.run("up", "--yes", "--skip-preview", check=False)
        lab.run(host, ["rm", "-rf", "--", BACKUPS])


def test_a_run_killed_right_after_a_vm_is_defined_converges_after_recover(stack):
    stack.edit_config(_with_vm2)
    proc = subprocess.Popen(
        ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive", "--stack", stack.stack],
        cwd=stack.dir,
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, defined = time.monotonic() + 600, False
        while not defined and time.monotonic() < deadline and proc.poll() is None:
            defined = VM2 in defined_on("node2")
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    try:
        assert defined, "the run never defined the second VM"
        stop_language_hosts(stack)
        stack.recover()
        stack.run("up", "--yes", "--skip-preview")
        assert [n for n in NODES if VM2 in defined_on(n)] == ["node2"], "one domain, adopted"
        export = json.loads(stack.run("stack", "export", "--stack", stack.stack).stdout)
        outs = next(
            r["outputs"] for r in export["deployment"]["resources"] if r["urn"].endswith(f"::{VM2}")
        )
        assert outs["ready"] is True and not outs.get("cloud_init_errors"), outs
        assert steps(stack).get(VM2, "same") == "same"  # the preview lists changes only
    finally:
        stack.edit_config(_without_vm2)
        stack.run("up", "--yes", "--skip-preview", check=False)
        lab.run("node2", f"virsh destroy {VM2}; virsh undefine {VM2}", timeout=30)
    assert VM2 not in defined_on("node2")


def test_destroy_gives_eth0_its_address_back_and_removes_the_guest(stack):
    stack.run("destroy", "--yes", "--skip-preview")
    for n in lab.inventory()["nodes"]:
        assert VM not in defined_on(n["name"])
        addrs = lab.run(n, ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert f"{n['address']}/" in addrs
        assert lab.run(n, ["ip", "link", "show", "br0"]).returncode != 0
