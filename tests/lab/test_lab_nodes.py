"""Lab tier: the lab's nodes behave like separate servers.

Needs root and a lab that is up (`python -m lab up`); skipped otherwise. The down/up cycle
at the end wipes every node (and so any Ceph deployed on them), so it only runs when
CKLAB_TEST_CYCLE=1 is set, e.g. as its own step after the other lab tests.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # `lab` lives at the repo root, whatever pytest's rootdir is
import lab  # noqa: E402
from lab import const, disks, net  # noqa: E402

pytestmark = pytest.mark.lab


def _lab_or_skip():
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")
    inv = lab.inventory()
    if not inv:
        pytest.skip("no lab is up (run `python -m lab up` as root first)")
    missing = [n["name"] for n in inv["nodes"] if lab.const.netns(n["name"]) not in net.lab_netns()]
    if missing:
        pytest.skip(
            f"lab inventory exists but namespaces are missing for {missing}: run `python -m lab up`"
        )
    return inv


@pytest.fixture(scope="module")
def inv():
    return _lab_or_skip()


@pytest.fixture(scope="module")
def nodes(inv):
    return inv["nodes"]


def out(node, cmd):
    res = lab.run(node, cmd, timeout=60)
    assert res.returncode == 0, f"{node['name']}: {cmd!r}: {res.stderr}"
    return res.stdout.strip()


def test_inventory_format(inv):
    assert set(inv) == {"nodes", "ssh", "public_network", "vars"}
    assert inv["public_network"] == const.SUBNET
    assert Path(inv["ssh"]["key_file"]).is_file() and Path(inv["ssh"]["known_hosts"]).is_file()
    assert set(inv["vars"]) <= {"client_key", "guest_address", "guest_image", "topology"}
    assert inv["vars"]["topology"] == "single"  # `up --runbook` makes the other one
    for i, n in enumerate(inv["nodes"], 1):
        assert set(n) == {"name", "address", "port", "user", "host_key", "disks"}
        assert (n["name"], n["address"], n["port"], n["user"]) == (
            f"node{i}",
            const.address(i),
            22,
            "root",
        )
        assert re.fullmatch(r"ssh-ed25519 AAAA\S+", n["host_key"])
        assert n["disks"] and all(d.startswith("/dev/loop") for d in n["disks"])


def test_hostname_is_node_name(nodes):
    for n in nodes:
        assert out(n, "hostname") == n["name"]


def test_etc_ceph_is_private(nodes):
    if len(nodes) < 2:
        pytest.skip("needs two nodes")
    marker = f"/etc/ceph/lab-private-{os.getpid()}"
    out(nodes[0], f"echo {nodes[0]['name']} > {marker}")
    try:
        assert out(nodes[0], f"cat {marker}") == nodes[0]["name"]
        assert lab.run(nodes[1], ["test", "-e", marker]).returncode == 1
        assert not os.path.exists(marker)
    finally:
        lab.run(nodes[0], ["rm", "-f", marker])


def test_private_dirs_and_ceph_ownership(nodes):
    n = nodes[0]
    for path in ["/run", "/etc/libvirt", "/var/lib/libvirt", "/mnt", "/root/.ssh", "/etc/hosts"]:
        # A bind mount: the node sees another file than the host does.
        st = os.stat(path)
        assert out(n, f"stat -c %d:%i {path}") != f"{st.st_dev}:{st.st_ino}", path
    owners = out(n, "stat -c %U:%G /var/lib/ceph /var/log/ceph /run/ceph").split()
    assert owners == ["ceph:ceph"] * 3
    assert out(n, "test -d /var/log/libvirt/qemu && test -d /run/sshd && echo ok") == "ok"


def test_node_shell_is_a_plain_debian_root_shell(nodes):
    # Node sessions must not run the host's ~/.bashrc (pyenv etc.): system tools come first.
    for n in nodes:
        assert out(n, "command -v python3") == "/usr/bin/python3"


def test_nodes_resolve_and_reach_each_other(nodes):
    if len(nodes) < 2:
        pytest.skip("needs two nodes")
    a, b = nodes[0], nodes[1]
    assert out(a, ["getent", "hosts", b["name"]]).split()[0] == b["address"]
    out(a, ["ping", "-c", "1", "-W", "2", b["name"]])
    # Name resolution + TCP to the other node's sshd: its banner comes back.
    banner = out(a, f"timeout 5 bash -c 'exec 3<>/dev/tcp/{b['name']}/22; head -c 4 <&3'")
    assert banner == "SSH-"


def test_nodes_have_no_default_route(nodes):
    for n in nodes:
        assert "default" not in out(n, "ip route; ip -6 route"), n["name"]


def test_libvirt_answers_with_distinct_host_uuids(nodes):
    uuids = {}
    for n in nodes:
        caps = out(n, "virsh -c qemu:///system capabilities")
        uuids[n["name"]] = re.search(r"<host>\s*<uuid>([0-9a-f-]+)</uuid>", caps).group(1)
        conf = out(n, "cat /etc/libvirt/qemu.conf")
        assert f'migration_host = "{n["address"]}"' in conf
        assert out(n, "ls /etc/libvirt/qemu/networks/autostart") == ""
    assert len(set(uuids.values())) == len(nodes), uuids


def test_disks_are_block_devices_in_nodes(nodes):
    for n in nodes:
        for dev in n["disks"]:
            size = int(out(n, ["blockdev", "--getsize64", dev]))
            assert size > 0


def test_changed_host_key_is_refused(nodes, tmp_path):
    n = nodes[0]
    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    fake = " ".join((tmp_path / "wrong.pub").read_text().split()[:2])
    kh = tmp_path / "known_hosts"
    kh.write_text(f"{n['name']},{n['address']} {fake}\n")
    res = lab.run(n, "hostname", known_hosts=kh)
    assert res.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in res.stderr
    # And with the lab's own known_hosts the same command works.
    assert out(n, "hostname") == n["name"]


def test_unreachable_route_while_up(inv):
    routes = subprocess.run(
        ["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True, check=True
    ).stdout
    assert "10.231.0.0/16" in routes
    status_rows, ok = lab.status()
    assert ok, status_rows


# Keep last: it takes the lab down and up again.
@pytest.mark.skipif(
    os.environ.get("CKLAB_TEST_CYCLE") != "1",
    reason="wipes the lab: set CKLAB_TEST_CYCLE=1 to run the down/up cycle",
)
def test_down_leaves_nothing_then_up_again(inv):
    shape = dict(nodes=len(inv["nodes"]), disks_per_node=len(inv["nodes"][0]["disks"]))
    cli = [sys.executable, "-m", "lab"]
    assert subprocess.run(cli + ["down"], cwd=REPO).returncode == 0
    assert lab.leftovers() == []
    assert not net.lab_netns() + net.lab_links()
    assert (
        "10.231.0.0/16"
        not in subprocess.run(
            ["ip", "route", "show", "table", "all"], capture_output=True, text=True
        ).stdout
    )
    assert not disks.lab_loops()
    assert lab.inventory() is None
    # A second down is a no-op success.
    assert subprocess.run(cli + ["down"], cwd=REPO).returncode == 0
    t0 = time.monotonic()
    up = cli + [
        "up",
        "--nodes",
        str(shape["nodes"]),
        "--disks-per-node",
        str(shape["disks_per_node"]),
    ]
    assert subprocess.run(up, cwd=REPO).returncode == 0
    assert time.monotonic() - t0 < 60
    assert subprocess.run(cli + ["status"], cwd=REPO).returncode == 0
