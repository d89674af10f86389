"""A node taken out of the stack is left without Ceph credentials: a two-node Ceph cluster
(size-2 pools) with a third, KVM-only node that mounts CephFS; then the third node leaves
the inventory and one `up` takes its mount, fstab line, ceph.conf and keys away, while the
other two keep the filesystem."""

import json
import os
import time

import pytest

import lab
from tests.cli import Project
from tests.lab.test_ceph_lab import MNT, sh

pytestmark = pytest.mark.lab
if os.geteuid() != 0 or not lab.inventory():
    pytest.skip("needs root and a running lab (make test brings it up)", allow_module_level=True)

GONE = "node3"


def edit_inventory(project: Project, change) -> None:
    path = os.path.join(project.dir, ".lab" + os.environ.get("CEPHKVM_LAB", ""), "inventory.json")
    with open(path) as f:
        inv = json.load(f)
    change(inv)
    with open(path, "w") as f:
        json.dump(inv, f)


def two_ceph_nodes_and_a_client(config: dict) -> None:
    for k in [k for k in config if k.split(":", 1)[1] in ("bridges", "vms")]:
        del config[k]
    config["cephkvm:pools"] = [
        {
            "name": "cephfs_meta",
            "size": 2,
            "min_size": 1,
            "pg_num": 8,
            "application": "cephfs",
            "allow_delete": True,
        },
        {
            "name": "cephfs_data",
            "size": 2,
            "min_size": 1,
            "pg_num": 8,
            "application": "cephfs",
            "allow_delete": True,
        },
    ]
    config["cephkvm:filesystems"][0]["standby_count"] = 0


def ceph_files(node: str) -> list:
    out = lab.run(node, "ls /etc/ceph /var/lib/ceph/bootstrap-osd 2>/dev/null").stdout
    return sorted(n for n in out.split() if n.endswith((".conf", ".keyring")))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = Project(str(tmp_path_factory.mktemp("decommission")), "lab")
    project.edit_config(two_ceph_nodes_and_a_client)
    edit_inventory(
        project,
        lambda inv: next(n for n in inv["nodes"] if n["name"] == GONE).update(roles=["kvm"]),
    )
    try:
        project.run("up", "--yes", "--skip-preview")
        yield project
    finally:
        project.run("destroy", "--yes", "--skip-preview", check=False)


def test_a_client_node_holds_its_mount_key_and_no_admin_key(project):
    files = ceph_files(GONE)
    assert "ceph.conf" in files and "ceph.client.admin.keyring" not in files, files
    token = f"from {GONE} {time.time()}"
    sh(GONE, f"echo '{token}' > {MNT}/decommission.txt")
    assert sh("node1", f"cat {MNT}/decommission.txt").strip() == token


def test_a_node_taken_out_of_the_stack_loses_every_ceph_credential(project):
    edit_inventory(
        project, lambda inv: inv.update(nodes=[n for n in inv["nodes"] if n["name"] != GONE])
    )
    project.run("up", "--yes", "--skip-preview")
    assert ceph_files(GONE) == []
    assert lab.run(GONE, ["mountpoint", "-q", MNT]).returncode != 0
    assert MNT not in lab.run(GONE, ["cat", "/etc/fstab"]).stdout
    # the cluster and the filesystem go on without it
    assert sh("node1", f"cat {MNT}/decommission.txt").startswith(f"from {GONE}")
    clients = json.loads(sh("node1", "ceph auth ls -f json"))["auth_dump"]
    assert not [c["entity"] for c in clients if c["entity"].endswith(f"-{GONE}")]
