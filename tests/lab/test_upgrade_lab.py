"""An existing stack keeps working after an upgrade: the lab stack brought up by the code
as it was before the one-schema change (BEFORE, from git) is previewed, refreshed, updated
and destroyed by this checkout's code and stack file. The state pickles each provider by its
module path, and every input's shape must come out the same, or the first preview would want
changes (the old stack file said `cephkvm:lab`; the new one reads the same nodes and values
through `cephkvm:inventory`)."""

import json
import os
import shutil
import subprocess

import pytest

import lab
from tests.cli import ROOT, Project
from tests.lab.test_kvm_lab import GUEST, GUEST_IMAGE, SUBNET, defined_on, sweep, vm_config

pytestmark = pytest.mark.lab
if os.geteuid() != 0 or not lab.inventory():
    pytest.skip("needs root and a running lab (make test brings it up)", allow_module_level=True)
if not os.path.exists(GUEST_IMAGE):
    pytest.skip("no lab guest image: run `make guest-image`", allow_module_level=True)

BEFORE = "e3c7c22"  # the last commit before providers/schema/ (issue 10)
VM = "lab-vm1"


def old_tree(dest: str) -> str:
    """BEFORE's project files, from this clone's history."""
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", ROOT, "archive", BEFORE], capture_output=True)
    assert archive.returncode == 0, (
        f"commit {BEFORE} is not in this clone's history "
        f"(a shallow clone?): {archive.stderr.decode()[-500:]}"
    )
    subprocess.run(["tar", "-x", "-C", dest], input=archive.stdout, check=True)
    return dest


def inventory_path(project: Project) -> str:
    return os.path.join(project.dir, ".lab" + os.environ.get("CEPHKVM_LAB", ""), "inventory.json")


def with_legacy_keys(project: Project) -> None:
    """The project's copy of the inventory as the lab of BEFORE wrote it too (its code
    reads subnet, ssh_key and known_hosts); the upgraded lab writes the strict format."""
    with open(inventory_path(project)) as f:
        inv = json.load(f)
    inv.update(
        subnet=inv["public_network"],
        ssh_key=inv["ssh"]["key_file"],
        known_hosts=inv["ssh"]["known_hosts"],
    )
    with open(inventory_path(project), "w") as f:
        json.dump(inv, f)


def changes(project: Project) -> dict:
    preview = project.preview_json()
    return {s["urn"].rsplit("::", 1)[1]: s["op"] for s in preview["steps"] if s["op"] != "same"}


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory):
    work = tmp_path_factory.mktemp("upgrade")
    project = Project(str(work), "lab", code=old_tree(str(work / "before")))

    def configure(config):
        vm_config(config)["cloud_init"]["network_config"]["ethernets"]["eth0"]["addresses"] = [
            f"{GUEST}/{SUBNET.prefixlen}"
        ]
        # Without the lab stack's mgr option (stacks/Pulumi.lab.yaml): BEFORE's code sets a
        # startup option only in the mons' store, this code also in ceph.conf, restarting
        # the mgrs, so the same config would differ. Health is not this test's subject.
        options = config["cephkvm:ceph"].get("options", {})
        options.get("mgr", {}).pop("mgr_disabled_modules", None)
        if "mgr" in options and not options["mgr"]:
            del options["mgr"]

    project.edit_config(configure)
    with_legacy_keys(project)
    try:
        first = project.run("up", "--yes", "--skip-preview", check=False)  # the code as it was
        if first.returncode != 0:
            # BEFORE's transport took a read whose channel closed without an exit status for
            # a failure (asked again since); its own promise holds: a re-run converges.
            print(f"the old code's first up failed, run again:\n{first.stdout[-1500:]}")
            project.run("up", "--yes", "--skip-preview")
        project.upgrade_code()
        project.edit_config(configure)  # the test's own edit, on the new stack file
        shutil.copy(lab.const.INVENTORY, inventory_path(project))  # the lab's, as it is now
        yield project
    finally:
        project.run("destroy", "--yes", "--skip-preview", check=False)
        sweep()


def test_the_upgraded_code_previews_the_old_stack_changing_only_the_peers_files(upgraded):
    """Since BEFORE, each KVM node's MigrationAccess also keeps the KVM nodes' addresses and
    host keys for the VMs' reads (no VM carries them): that file is the one change."""
    nodes = [n["name"] for n in lab.inventory()["nodes"]]
    assert changes(upgraded) == {f"{n}-migration": "update" for n in nodes}
    upgraded.run("up", "--yes", "--skip-preview")
    for n in nodes:
        assert lab.run(n, ["test", "-s", "/root/.ssh/cephkvm_peers.json"]).returncode == 0, n
    assert changes(upgraded) == {}


def test_refresh_then_preview_shows_no_change(upgraded):
    upgraded.run("refresh", "--yes", "--skip-preview")
    assert changes(upgraded) == {}


def test_an_update_after_the_upgrade_reaches_the_hosts(upgraded):
    def quota(config):
        pool = next(p for p in config["cephkvm:pools"] if p["name"] == "cephfs_data")
        pool["quota_max_objects"] = 12345

    upgraded.edit_config(quota)
    assert changes(upgraded) == {"pool-cephfs_data": "update"}
    upgraded.run("up", "--yes", "--skip-preview")
    got = lab.run("node1", ["ceph", "osd", "pool", "get-quota", "cephfs_data", "-f", "json"])
    assert json.loads(got.stdout)["quota_max_objects"] == 12345
    assert changes(upgraded) == {}


def test_destroy_by_the_upgraded_code_leaves_nothing(upgraded):
    upgraded.run("destroy", "--yes", "--skip-preview")
    for n in lab.inventory()["nodes"]:
        assert VM not in defined_on(n["name"])
        left = lab.run(
            n["name"], "find /var/lib/ceph/mon /var/lib/ceph/osd -mindepth 1 -maxdepth 1"
        ).stdout
        assert not left.split(), f"{n['name']}: {left}"
        assert lab.run(n["name"], ["ip", "link", "show", "br0"]).returncode != 0
