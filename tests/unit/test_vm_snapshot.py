"""VmSnapshot and restoring a VM from one, against CloudVM's fake node (files) and libvirt's
test:///default driver: the guest frozen around the snapshot, and thawed whatever happens."""

import pytest

from providers import guest_agent, vm_storage
from providers.cloud_vm import CloudVMProvider
from providers.errors import Failure
from providers.vm_snapshot import VmSnapshotProvider
from tests.unit.test_cloud_vm import PROPS, TEMPLATE, VM_HOST, checked, node  # noqa: F401

pytestmark = pytest.mark.unit

SNAP = {k: PROPS[k] for k in ("node", "connection", "storage", "owner")}
SNAP.update(vm=PROPS["name"], name="before-upgrade")
DIRS = vm_storage.snapshot_dirs("/mnt/cephfs", PROPS["name"], "before-upgrade")


@VM_HOST.program("rmdir")
def _rmdir(host, command):
    del host.files[command.argv[-1] + "/"]
    return "", 0


@VM_HOST.program("cp")
def _cp(host, command):
    host.files[command.argv[-1]] = host.files[command.argv[-2]]
    return "", 0


@pytest.fixture
def running(node, monkeypatch):  # noqa: F811
    """node with the VM created and running; its agent's calls recorded."""
    CloudVMProvider().create(checked())
    calls, answer = [], node.guest

    def agent(dom, execute, **args):
        calls.append(execute)
        if execute == "guest-fsfreeze-status":
            return node.guest.frozen
        return answer(dom, execute, **args)

    node.guest.frozen, node.agent_calls = "thawed", calls
    monkeypatch.setattr(guest_agent, "command", agent)
    return node


def snapshot(props=None):
    result = VmSnapshotProvider().check({}, dict(props or SNAP))
    assert result.failures == []
    return VmSnapshotProvider().create(result.inputs).outs


def test_the_guest_is_frozen_around_both_snapshots_and_thawed(running):
    outs = snapshot()
    assert outs["consistency"] == "quiesced"
    assert all(d + "/" in running.files for d in DIRS)
    freeze = running.agent_calls.index("guest-fsfreeze-freeze")
    assert running.agent_calls[freeze + 1 :] == ["guest-fsfreeze-thaw"]
    made = [c for c in running.changes if c.startswith("mkdir -- ")]
    assert made == [f"mkdir -- {d}" for d in DIRS]


def test_a_guest_without_agent_is_snapshotted_crash_consistent(running):
    running.guest.agent = False
    outs = snapshot()
    assert outs["consistency"].startswith("crash-consistent (not quiesced: the guest agent")
    assert all(d + "/" in running.files for d in DIRS)


def test_a_guest_left_frozen_is_thawed_and_a_made_snapshot_kept(running):
    """The re-run after a kill between the mkdir and the thaw."""
    running.files[DIRS[0] + "/"] = running.files[DIRS[1] + "/"] = "dir"
    running.guest.frozen = "frozen"
    outs = snapshot()
    assert running.agent_calls == ["guest-fsfreeze-status", "guest-fsfreeze-thaw"]
    assert not [c for c in running.changes if c.startswith("mkdir -- ")]
    assert outs["consistency"].startswith("as found")


def test_a_failed_mkdir_still_thaws_and_says_what_to_do(running):
    @VM_HOST.program("mkdir")
    def _refuse(_node, _command):
        return "mkdir: cannot create directory: Operation not permitted", 1

    try:
        with pytest.raises(Failure, match="'s' flag"):
            snapshot()
    finally:
        from tests.unit import test_cloud_vm

        VM_HOST.program("mkdir")(test_cloud_vm._mkdir)
    assert running.agent_calls[-1] == "guest-fsfreeze-thaw"


def test_delete_removes_the_snapshots_and_never_the_disk(running):
    outs = snapshot()
    VmSnapshotProvider().delete("id", outs)
    assert not any(d + "/" in running.files for d in DIRS)
    assert "/mnt/cephfs/virtualmachines/vm-unit.qcow2" in running.files
    assert not [c for c in running.changes if "qcow2" in c and c.startswith("rm ")]


def test_a_vm_restored_from_a_snapshot_copies_that_overlay(running):
    snapshot()
    running.files[DIRS[0] + "/vm-unit.qcow2"] = "overlay at the snapshot"
    restored = {
        **PROPS,
        "name": "vm-restored",
        "template": {"snapshot": "vm-unit@before-upgrade"},
        "disk_gib": 8,
        "wait_for": "none",  # the fake guest boots vm-unit's seed only
    }
    try:
        outs = CloudVMProvider().create(checked(restored)).outs
    finally:
        for dom in running.conn.listAllDomains():
            if dom.name() == "vm-restored":
                dom.destroy()
                dom.undefine()
    assert running.files["/mnt/cephfs/virtualmachines/vm-restored.qcow2"] == (
        "overlay at the snapshot"
    )
    assert outs["template_path"] == TEMPLATE
    assert any(c.startswith("qemu-img resize -q ") and c.endswith(" 8G") for c in running.changes)


def test_a_restore_from_a_missing_or_larger_snapshot_changes_nothing(running):
    before = len(running.changes)
    missing = {**PROPS, "name": "vm-restored", "template": {"snapshot": "vm-unit@gone"}}
    with pytest.raises(Failure, match="snapshot vm-unit@gone does not exist"):
        CloudVMProvider().create(checked(missing))
    snapshot()
    running.files[DIRS[0] + "/vm-unit.qcow2"] = "overlay"
    before = len(running.changes)
    small = {**missing, "template": {"snapshot": "vm-unit@before-upgrade"}, "disk_gib": 2}
    with pytest.raises(Failure, match="set disk_gib to at least 4"):
        CloudVMProvider().create(checked(small))
    assert running.changes[before:] == []


def test_a_rollback_needs_its_opt_in_at_preview(running):
    olds = checked()
    news = {**PROPS, "snapshots": ["before-upgrade"], "rollback_to": "before-upgrade"}
    failures = CloudVMProvider().check(olds, news).failures
    assert [f.property for f in failures] == ["rollback_to"]
    assert "allow_rollback: true" in failures[0].reason
    assert CloudVMProvider().check(olds, {**news, "allow_rollback": True}).failures == []


def test_a_rollback_swaps_in_the_snapshots_disk_and_keeps_the_old_one(running):
    olds = CloudVMProvider().create(checked()).outs
    snapshot()
    disk = "/mnt/cephfs/virtualmachines/vm-unit.qcow2"
    running.files[DIRS[0] + "/vm-unit.qcow2"] = "disk at the snapshot"
    running.files[disk] = "disk now"
    news = checked({**PROPS, "rollback_to": "before-upgrade", "allow_rollback": True}, olds)
    CloudVMProvider().update("vm-unit", olds, news)
    assert running.files[disk] == "disk at the snapshot"
    kept = [k for k in running.files if k.startswith(disk + ".before-rollback-")]
    assert [running.files[k] for k in kept] == ["disk now"]
    assert running.conn.lookupByName("vm-unit").isActive()
