"""The runbook's own layout (`python -m lab up --runbook`): every node on two switches
(management and the VM bridge on eth0, Ceph's public network on eth1), reached only as the
service account `cephsvc` with passwordless sudo, and a stack that lists its nodes
explicitly with pinned host keys (lab/stacks.py), no lab shortcut. The whole bring-up from
empty nodes, Ceph on its own network, the VM on the bridge, a live migration, destroy.

The module rebuilds the lab in that layout and puts the default one back after it."""

import ipaddress
import json
import os

import pytest
import yaml

import lab
from lab.stacks import runbook_config
from lab import const
from tests.cli import Project
from tests.lab import browser
from tests.lab.test_kvm_lab import _virsh

pytestmark = pytest.mark.lab
if os.geteuid() != 0 or not lab.inventory():
    pytest.skip("needs root and a running lab (make test brings it up)", allow_module_level=True)
if not os.path.exists(os.path.expanduser("~/.cache/cephkvm-images/lab-guest.qcow2")):
    pytest.skip("no lab guest image: run `make guest-image`", allow_module_level=True)

VM = "lab-vm1"
CEPH_DAEMONS = ("ceph-mon", "ceph-mgr", "ceph-osd", "ceph-mds")


@pytest.fixture(scope="module")
def runbook(tmp_path_factory):
    inv = lab.up(runbook=True)
    try:
        project = Project(str(tmp_path_factory.mktemp("runbook")), "runbook")
        with open(project.stack_file) as f:
            doc = yaml.safe_load(f) or {}
        doc["config"] = runbook_config(inv)
        with open(project.stack_file, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        project.run("up", "--yes", "--skip-preview")
        yield project, inv
        project.run("destroy", "--yes", "--skip-preview")
    finally:
        lab.up()  # the default layout for the modules after this one


def sudo(node: str, *argv, check=True, timeout=60):
    return lab.run(node, ["sudo", "-n", *argv], check=check, timeout=timeout)


def ceph_json(*args):
    return json.loads(sudo("node1", "ceph", *args, "-f", "json").stdout)


def guest(node: str, command: str, address: str):
    """command in the guest over SSH from node (root's ssh: the lab key is root's)."""
    key = lab.inventory()["ssh"]["key_file"]
    argv = ["ssh", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    argv += ["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"debian@{address}", command]
    return sudo(node, *argv, check=False, timeout=30)


def listeners(node: str) -> dict:
    """{process: {addresses it listens on}} from the node's own `ss`."""
    found: dict = {}
    for line in sudo(node, "ss", "-Hltnp").stdout.splitlines():
        fields = line.split()
        local, users = fields[3], " ".join(fields[5:])
        for name in CEPH_DAEMONS:
            if f'"{name}"' in users:
                found.setdefault(name, set()).add(local.rsplit(":", 1)[0].strip("[]"))
    return found


def test_the_nodes_are_reached_only_as_the_service_account(runbook):
    _project, inv = runbook
    node = inv["nodes"][0]
    assert node["user"] == "cephsvc"
    assert lab.run(node, ["id", "-un"], check=True).stdout.strip() == "cephsvc"
    # its own known_hosts: a fresh connection, not the service account's open master
    as_root = lab.run({**node, "user": "root"}, ["true"], known_hosts=str(lab.const.KNOWN_HOSTS))
    assert as_root.returncode != 0, "root cannot log in on the runbook's nodes"
    host_users = open("/etc/passwd").read()
    assert "cephsvc" not in host_users, "the account exists only inside the nodes"


def test_ceph_is_healthy_and_uses_only_the_ceph_network(runbook):
    _project, inv = runbook
    ceph_net = ipaddress.ip_network(inv["public_network"])
    status = ceph_json("status")
    assert status["health"]["status"] == "HEALTH_OK", status["health"]
    mons = ceph_json("mon", "dump")["mons"]
    for mon in mons:
        assert ipaddress.ip_address(mon["addr"].split(":")[0]) in ceph_net, mon
    osds = ceph_json("osd", "dump")["osds"]
    for osd in osds:
        for key in ("public_addr", "cluster_addr"):
            assert ipaddress.ip_address(osd[key].split(":")[0]) in ceph_net, osd
    kinds = set()
    for n in inv["nodes"]:
        found = listeners(n["name"])
        # every node's mon, OSD and MDS; a standby mgr binds nothing until it is active
        assert {"ceph-mon", "ceph-osd", "ceph-mds"} <= set(found), (n["name"], found)
        kinds |= set(found)
        for name, addresses in found.items():
            wrong = [a for a in addresses if ipaddress.ip_address(a) not in ceph_net]
            assert not wrong, f"{n['name']}: {name} listens on {wrong}, outside {ceph_net}"
    assert kinds == set(CEPH_DAEMONS), kinds


def test_cephfs_written_on_one_node_is_read_on_another(runbook):
    sudo("node1", "sh", "-c", "echo runbook > /mnt/cephfs/runbook-probe")
    assert sudo("node3", "cat", "/mnt/cephfs/runbook-probe").stdout.strip() == "runbook"
    sudo("node1", "rm", "-f", "/mnt/cephfs/runbook-probe")


def test_vm_on_the_bridge_live_migrates(runbook):
    project, inv = runbook
    address = inv["vars"]["guest_address"].split("/")[0]
    vms = project.outputs()["vms"]
    assert vms[VM]["host"] == "node1" and vms[VM]["state"] == "running"
    before = guest("node2", "cat /proc/uptime", address)  # through node2's bridge
    assert before.returncode == 0, before.stderr

    def move(config):
        config["cephkvm:vms"][0]["node"] = "node2"

    project.edit_config(move)
    project.run("up", "--yes", "--skip-preview")
    listed = sudo("node2", "virsh", "-c", "qemu:///system", "list", "--name").stdout.split()
    assert listed == [VM]
    after = guest("node3", "cat /proc/uptime", address)
    assert after.returncode == 0, after.stderr
    assert float(after.stdout.split()[0]) > float(before.stdout.split()[0]), "kept running"
    assert project.outputs()["vms"][VM]["host"] == "node2"
    project.run("preview", "--expect-no-changes")


def test_virsh_reaches_the_vm_as_the_service_account(runbook, tmp_path):
    project, inv = runbook
    host = project.outputs()["vms"][VM]["host"]
    access = project.outputs()["nodes"][host]["libvirt"]
    address = next(n["address"] for n in inv["nodes"] if n["name"] == host)
    assert access["uri"] == f"qemu+ssh://cephsvc@{address}/system"
    got = _virsh(access["uri"], access["known_hosts"], tmp_path)
    assert got.returncode == 0, got.stderr
    assert VM in got.stdout.split()


def test_cockpit_lists_the_vm_running_in_a_browser(runbook):
    project, inv = runbook
    outputs = project.outputs()
    host = outputs["vms"][VM]["host"]
    cockpit = outputs["cockpit"]
    address = next(n["address"] for n in inv["nodes"] if n["name"] == host)
    assert cockpit["user"] == "cockpit-admin"
    assert cockpit["urls"][host] == f"https://{address}:9090/"
    assert outputs["cockpit_password"] == "[secret]"
    password = project.outputs(show_secrets=True)["cockpit_password"]
    assert password not in project.state_text()
    shot = os.path.join(browser.ARTIFACTS, "cockpit-machines.png")
    at = cockpit["urls"][host]
    seen = browser.look(const.netns("node3"), "cockpit", at, "cockpit-admin", password, shot, VM)
    assert seen["name"] == VM and seen["state"] == "Running", seen["text"][:2000]
    assert sudo(host, "id", "-nG", "cockpit-admin").stdout.split().count("libvirt") == 1
