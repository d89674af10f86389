"""VmBackup and its node script (providers/vm_backup.sh), run here on real qcow2 files with
real qemu-img: full and incremental backups, pruning, quiescing, a killed run's leftovers,
and the schedule's `due`. Only libvirt (virsh) and the CephFS snapshot (a mkdir under .snap
copies the directory, as CephFS shows it) are stand-ins; the lab tier runs the real ones."""

import json
import os
import pathlib
import shutil
import stat
import subprocess
import time

import pytest

from providers import vm_backup
from providers.transport import CommandError, Result, Session

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img (qemu-utils)"),
]

OWNER = "cephkvm/test"
VIRSH = """#!/bin/sh
F=$FAKE_DIR
echo "$*" >> "$F/virsh.log"
[ "$1" = -q ] && shift
case "$1" in
metadata) [ -e "$FAKE_DIR/defined" ] && echo "<vm><owner>$(cat "$F/defined")</owner></vm>" ;;
domstate) [ -e "$FAKE_DIR/defined" ] && cat "$FAKE_DIR/state" ;;
domfsfreeze) [ -e "$F/agent" ] || { echo "error: Guest agent is not responding" >&2; exit 1; } ;;
domfsthaw) [ -e "$FAKE_DIR/agent" ] || exit 1 ;;
esac
"""
MKDIR = """#!/bin/sh
for last; do :; done
case "$last" in
*/.snap/*) parent=${last%/.snap/*}; /bin/mkdir -p "$last" && cp "$parent"/*.qcow2 "$last"/ ;;
*) exec /bin/mkdir "$@" ;;
esac
"""

RMDIR = """#!/bin/sh
for last; do :; done
case "$last" in
*/.snap/*) [ -d "$last" ] && rm -rf -- "$last" ;;
*) exec /bin/rmdir "$@" ;;
esac
"""


class LocalNode:
    """A Session that runs here: the script's commands are real."""

    name = "node1"
    put_if_changed = Session.put_if_changed
    _mode_owner = Session._mode_owner

    def __init__(self, env):
        self.env = env

    def run(self, argv, change=False, check=True, timeout=None, stdin=None):
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, input=stdin)
        if check and proc.returncode:
            raise CommandError("node1", " ".join(argv), proc.returncode, proc.stderr)
        return Result(proc.stdout, proc.stderr, proc.returncode)

    def ok(self, argv):
        return self.run(argv, check=False).exit_code == 0

    def get(self, path):
        return pathlib.Path(path).read_text() if os.path.exists(path) else None

    def put(self, path, text, mode="0644", **_kw):
        pathlib.Path(path).write_text(text)
        os.chmod(path, int(mode, 8))

    def fact(self, _name, probe):
        return probe()


@pytest.fixture
def lab(tmp_path, monkeypatch):
    fake = tmp_path / "fake"
    fake.mkdir()
    for name, text in (("virsh", VIRSH), ("mkdir", MKDIR), ("rmdir", RMDIR)):
        (fake / name).write_text(text)
        (fake / name).chmod(stat.S_IRWXU)
    storage = tmp_path / "storage"
    (storage / "virtualmachines").mkdir(parents=True)
    (storage / "virtualmachines" / ".snap").mkdir()  # CephFS shows it; here it is made
    disk = storage / "virtualmachines" / "web1.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "8M"], check=True)
    (fake / "defined").write_text(OWNER)
    (fake / "state").write_text("running\n")
    (fake / "agent").touch()
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "FAKE_DIR": str(fake)}
    monkeypatch.setattr(vm_backup, "SCRIPT", str(tmp_path / "cephkvm-backup"))
    props = {
        "vm": "web1",
        "storage": str(storage),
        "target": str(tmp_path / "backups"),
        "keep": 3,
        "full_every": 3,
        "node": "node1",
        "owner": OWNER,
    }
    return LocalNode(env), props, fake, disk


def write(disk, offset_kib: int, pattern: int) -> None:
    cmd = f"write -P {pattern} {offset_kib}k 256k"
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", cmd, str(disk)], check=True, capture_output=True
    )


def info(path: str) -> dict:
    out = subprocess.run(["qemu-img", "info", "--output=json", path], capture_output=True)
    return json.loads(out.stdout)


def same(a: str, b) -> bool:
    return subprocess.run(["qemu-img", "compare", "-q", a, str(b)]).returncode == 0


def take(node, props) -> dict:
    """One backup, as `pulumi up` takes it; a second apart (files are named by the second)."""
    got = vm_backup._take(node, props)
    second = int(time.time())
    while int(time.time()) == second:  # backups are named by the second they are taken
        time.sleep(0.02)
    return got


def test_the_first_backup_is_full_quiesced_and_stands_alone(lab):
    node, props, fake, disk = lab
    write(disk, 0, 1)
    got = take(node, props)
    assert got["kind"] == "full" and got["consistency"] == "quiesced", got
    assert "backing-filename" not in info(got["file"]) and same(got["file"], disk)
    calls = (fake / "virsh.log").read_text()
    assert "domfsfreeze web1" in calls and calls.rstrip().endswith("domfsthaw web1")
    assert oct(os.stat(got["file"]).st_mode)[-3:] == "600"
    assert not list((pathlib.Path(props["storage"]) / "virtualmachines" / ".snap").iterdir())


def test_incrementals_hold_only_what_changed_until_full_every(lab):
    node, props, _fake, disk = lab
    write(disk, 0, 1)
    write(disk, 4096, 2)
    full = take(node, props)
    write(disk, 1024, 3)  # 256 KiB changed
    inc = take(node, props)
    assert inc["kind"] == "incremental", inc
    assert info(inc["file"])["backing-filename"] == os.path.basename(full["file"])
    assert inc["bytes"] < full["bytes"] and same(inc["file"], disk)
    assert take(node, props)["kind"] == "incremental"
    assert take(node, props)["kind"] == "full"  # full_every: 3


def test_pruning_keeps_keep_and_the_oldest_kept_stands_alone(lab):
    node, props, _fake, disk = lab
    props = {**props, "keep": 2, "full_every": 10}
    write(disk, 0, 1)
    take(node, props)
    write(disk, 512, 2)
    second = take(node, props)
    write(disk, 1024, 3)
    take(node, props)
    kept = vm_backup._found(node, props)["backups"]
    assert [b["file"] for b in kept][0] == second["file"] and len(kept) == 2
    assert "backing-filename" not in info(second["file"])  # took in the oldest's data
    assert kept[1]["kind"] == "incremental" and same(kept[1]["file"], disk)


def test_without_a_guest_agent_it_says_crash_consistent_and_why(lab):
    node, props, fake, _disk = lab
    (fake / "agent").unlink()
    got = take(node, props)
    assert got["consistency"].startswith("crash-consistent (not quiesced: the guest agent")
    assert "not responding" in got["consistency"]
    (fake / "state").write_text("shut off\n")
    assert "not running" in take(node, props)["consistency"]


def test_another_stacks_domain_of_that_name_is_never_frozen(lab):
    node, props, fake, _disk = lab
    (fake / "defined").write_text("someone/else")
    assert "not running" in take(node, props)["consistency"]
    assert "domfsfreeze" not in (fake / "virsh.log").read_text()


def test_a_killed_runs_snapshot_and_partial_file_are_removed_first(lab):
    node, props, _fake, _disk = lab
    snaps = pathlib.Path(props["storage"]) / "virtualmachines" / ".snap"
    (snaps / "web1@backup+20260101T000000Z").mkdir()
    target = pathlib.Path(props["target"]) / "web1"
    target.mkdir(parents=True)
    (target / "20260101T000000Z.qcow2.part").write_text("half")
    take(node, props)
    assert not list(snaps.iterdir()) and not list(target.glob("*.part"))


def test_a_guest_a_killed_run_left_frozen_is_thawed_by_the_next_schedule_tick(lab):
    node, props, fake, _disk = lab
    vm_backup._policy(node, {**props, "every": 3600})
    take(node, props)  # not due again for an hour
    mark = pathlib.Path("/run/cephkvm-backup.web1.frozen")
    mark.touch()  # a run killed between freeze and thaw
    try:
        node.run([vm_backup.SCRIPT, "due", os.path.dirname(vm_backup._policy_path(props))])
        assert (fake / "virsh.log").read_text().rstrip().endswith("domfsthaw web1")
        assert not mark.exists()
    finally:
        mark.unlink(missing_ok=True)


def test_delete_keeps_every_backup_and_drops_the_policy(lab):
    node, props, _fake, _disk = lab
    props = {**props, "every": 3600}
    vm_backup._policy(node, props)
    policy = pathlib.Path(vm_backup._policy_path(props))
    assert "every=3600\n" in policy.read_text()
    first = take(node, props)
    vm_backup._forget(node, props)
    assert os.path.exists(first["file"]) and not policy.exists()


def test_the_schedule_takes_one_when_due_and_says_how_it_went(lab):
    node, props, fake, disk = lab
    vm_backup._policy(node, {**props, "every": 3600})
    policies = os.path.dirname(vm_backup._policy_path(props))
    vm_backup.install(node)

    def due():
        return node.run([vm_backup.SCRIPT, "due", policies])

    due()
    status = vm_backup._found(node, props)
    assert status["scheduled"]["ok"] and len(status["backups"]) == 1, status
    assert status["scheduled"]["backup"]["kind"] == "full"
    due()  # the newest is not an hour old: nothing
    assert len(vm_backup._found(node, props)["backups"]) == 1
    (fake / "state").write_text("shut off\n")  # another node runs it, or nobody
    disk.unlink()
    due()
    assert len(vm_backup._found(node, props)["backups"]) == 1


def test_a_failed_scheduled_backup_is_reported_not_hidden(lab):
    node, props, _fake, disk = lab
    vm_backup._policy(node, {**props, "every": 3600})
    disk.unlink()  # the VM's storage is not mounted on this node
    vm_backup.install(node)
    node.run([vm_backup.SCRIPT, "due", os.path.dirname(vm_backup._policy_path(props))])
    status = vm_backup._found(node, props)["scheduled"]
    assert status["ok"] is False and "has no disk" in status["error"], status


def test_paths_with_spaces_quotes_and_backslashes_come_back_as_valid_json(lab):
    node, props, _fake, _disk = lab
    props = {**props, "target": props["target"] + ' odd "dir" \\ here', "every": 3600}
    got = take(node, props)
    assert os.path.exists(got["file"]) and got["file"].startswith(props["target"])
    vm_backup._policy(node, props)
    (pathlib.Path(props["storage"]) / "virtualmachines" / "web1.qcow2").unlink()
    os.remove(got["file"])  # due again, and failing: "no disk ..." with the odd path in it
    node.run([vm_backup.SCRIPT, "due", os.path.dirname(vm_backup._policy_path(props))])
    status = vm_backup._found(node, props)["scheduled"]
    assert status["ok"] is False and "has no disk" in status["error"], status
