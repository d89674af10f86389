"""VmBackup's choices: full or incremental, what pruning merges before it removes, and that
nothing removes a backup on delete. The qemu-img commands themselves run on the lab (and
were checked by hand: an incremental rebased onto the previous backup compares identical
to its snapshot, `rebase -b ""` makes it stand alone)."""

import pytest

from providers import vm_backup
from providers.transport import Result

pytestmark = pytest.mark.unit

PROPS = {
    "vm": "web1",
    "storage": "/mnt/cephfs",
    "target": "/mnt/cephfs/backups",
    "keep": 3,
    "full_every": 3,
    "node": "node1",
}


class Node:
    """Commands run, in order; `exists` answers `test`."""

    def __init__(self):
        self.commands, self.exists = [], set()

    def run(self, argv, change=False, check=True, timeout=None):
        self.commands.append(list(argv))
        return Result("0\n" if argv[0] == "stat" else "", "", 0)

    def ok(self, argv):
        self.commands.append(list(argv))
        return argv[-1] in self.exists


def backup(n: int, kind: str) -> dict:
    return {"file": f"/mnt/cephfs/backups/web1/2026120{n}T000000Z.qcow2", "kind": kind, "bytes": 1}


@pytest.fixture
def node(monkeypatch):
    fake = Node()
    fake.chain = []
    monkeypatch.setattr(vm_backup, "_list", lambda _node, _p: list(fake.chain))
    monkeypatch.setattr(
        vm_backup.vm_snapshot, "quiesced", lambda _node, _p, _dirs, _what: "quiesced"
    )
    return fake


def qemu(node) -> list:
    return [c[:2] + c[-3:] for c in node.commands if c[0] == "qemu-img"]


def test_the_first_backup_is_full_and_reads_the_snapshot(node):
    last = vm_backup._take(node, PROPS)
    ((convert,),) = [[c for c in node.commands if c[:2] == ["qemu-img", "convert"]]]
    assert convert[-2].startswith("/mnt/cephfs/virtualmachines/.snap/web1@backup+")
    assert convert[-1] == last["file"] + ".part"
    assert last["kind"] == "full" and last["consistency"] == "quiesced"
    assert ["rmdir", "--", convert[-2].rsplit("/", 1)[0]] in node.commands
    assert ["chmod", "0600", "--", convert[-1]] in node.commands  # a disk's data, root's only


def test_the_next_ones_hold_what_changed_until_full_every(node):
    node.chain = [backup(1, "full")]
    assert vm_backup._take(node, PROPS)["kind"] == "incremental"
    rebase = next(c for c in node.commands if c[:2] == ["qemu-img", "rebase"])
    assert rebase[-3:-1] == ["-b", "20261201T000000Z.qcow2"]  # relative: the directory moves
    node.chain += [backup(2, "incremental"), backup(3, "incremental")]
    assert vm_backup._take(node, PROPS)["kind"] == "full"  # every 3rd one


def test_pruning_merges_the_oldest_into_the_next_before_removing_it(node):
    node.chain = [backup(1, "full"), backup(2, "incremental"), backup(3, "incremental")]
    vm_backup._prune(node, {**PROPS, "keep": 2})
    assert node.commands == [
        ["qemu-img", "rebase", "-f", "qcow2", "-b", "", backup(2, "")["file"]],
        ["rm", "-f", "--", backup(1, "")["file"]],
    ]


def test_delete_keeps_every_backup(node, monkeypatch):
    monkeypatch.setattr(vm_backup.base, "session", lambda _props: node)
    vm_backup.VmBackupProvider().delete("id", PROPS)
    assert not [c for c in node.commands if c[0] == "rm"]
    (script,) = [c[-1] for c in node.commands if c[0] == "sh"]
    assert "rm -f -- /mnt/cephfs/backups/web1/*.part" in script  # a killed run's partial file


def test_a_backup_in_the_same_second_is_refused_before_any_change(node, monkeypatch):
    node.exists = {"/mnt/cephfs/backups/web1/20261204T120000Z.qcow2"}

    real = vm_backup.datetime.datetime

    class Clock:
        @staticmethod
        def now(tz=None):
            return real(2026, 12, 4, 12, 0, 0, tzinfo=tz)

    monkeypatch.setattr(vm_backup.datetime, "datetime", Clock)
    with pytest.raises(vm_backup.Failure, match="one per second"):
        vm_backup._take(node, PROPS)
    assert not [c for c in node.commands if c[0] in ("qemu-img", "mv")]
