"""VmBackup: one VM's backups, taken while it runs, as qcow2 files in `target/VM/`.

The taking is providers/vm_backup.sh, installed on the node as SCRIPT: the one
implementation for `pulumi up` and for the node's own schedule (BackupSchedule), which
runs without pulumi. Each backup reads the VM's disk from a CephFS snapshot taken for it
with the guest frozen through its agent, so the copy is of one moment. A full backup is the
whole disk, template included, standing alone; an incremental one holds only what differs
from the previous backup and names it as its backing file (relative, so the directory can
be moved). Every `full_every`-th backup is full. Beyond `keep`, the oldest goes; the next
one first takes in its data, so every kept backup restores on its own terms.

When: one as soon as the VM has a backup policy, one whenever `now` changes, and with
`every` one whenever the newest is that old (the policy file in POLICIES, read by the
schedule of whichever node runs the VM). Checks before acting: a guest left frozen is
thawed, a killed run's temporary snapshot and partial file are removed; a node-local lock
keeps `up` and the schedule from taking one at once. Delete keeps every backup (the VM's
data outlives the VM); nothing here writes the VM's live disk. A new VM starts from a backup
with `template: {backup: FILE}` (vm_storage.restore_backup).
"""

from __future__ import annotations

import json
import pathlib
import posixpath
import shlex
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base
from providers.schema.kvm import BackupInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/kvm.py BackupInputs (+ ssh_private_key?)
# outputs: backups: [{file, kind (full | incremental), bytes}], oldest first;
#          last: {file, kind, bytes, consistency, seconds} of the latest one this stack took;
#          scheduled: the schedule's latest run {at, node, ok, backup | error}, or None
INPUTS = BackupInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
SCRIPT = "/usr/local/lib/cephkvm/cephkvm-backup"
SOURCE = pathlib.Path(__file__).with_name("vm_backup.sh").read_text()
POLICIES = "backup-policies"  # under the VM storage: every node's schedule reads them


class VmBackupProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        last = _take(self.node, props)
        _policy(self.node, props)
        return CreateResult(props["vm"], {**props, "last": last, **_found(self.node, props)})

    def read(self, id_, props):
        return ReadResult(id_, {**props, **_found(self.node, props)})

    def update(self, _id, olds, news):
        last = olds.get("last")
        if olds.get("now") != news.get("now"):
            last = _take(self.node, news)
        else:
            _script(self.node, news, "prune", _dir(news), news["keep"])
        _policy(self.node, news)
        return UpdateResult({**news, "last": last, **_found(self.node, news)})

    def delete(self, _id, props):
        _forget(self.node, props)


# --- on the node ------------------------------------------------------------------------


def _dir(p: dict) -> str:
    return posixpath.join(p["target"], p["vm"])


def install(node) -> None:
    """SCRIPT as this version ships it (once per node and run)."""

    def put():
        if not node.ok(["test", "-d", posixpath.dirname(SCRIPT)]):
            node.run(["install", "-d", posixpath.dirname(SCRIPT)], change=True)
        return node.put_if_changed(SCRIPT, SOURCE, mode="0755")

    node.fact("backup-script", put)


def _script(node, p: dict, *args):
    """SCRIPT with args, under the VM's node-local lock (the schedule takes it too)."""
    install(node)
    lock = f"/run/cephkvm-backup.{p['vm']}.lock"
    argv = ["flock", "-w", "3600", lock, SCRIPT, *map(str, args)]
    return node.run(argv, change=True, timeout=7200)


def _take(node, p: dict) -> dict:
    got = _script(node, p, "take", p["vm"], p["storage"], p["target"], p["keep"],
                  p["full_every"], p.get("owner") or "")  # fmt: skip
    return json.loads(got.stdout.strip().splitlines()[-1])


def _forget(node, p: dict) -> None:
    """A killed run's leftovers and the policy go (the schedules stop); the backups stay."""
    _script(node, p, "clean", p["vm"], p["storage"], _dir(p))
    _policy(node, {**p, "every": None})


def _policy_path(p: dict) -> str:
    return posixpath.join(p["storage"], POLICIES, p["vm"] + ".policy")


def _policy(node, p: dict) -> None:
    """The VM's policy for the schedules (KEY=VALUE lines), or none without `every`."""
    path = _policy_path(p)
    if not p.get("every"):
        if node.ok(["test", "-e", path]):
            node.run(["rm", "-f", "--", path], change=True)
        return
    keys = ("vm", "storage", "target", "keep", "full_every", "every", "owner")
    text = "".join(f"{k}={p.get(k) or ''}\n" for k in keys)
    if not node.ok(["test", "-d", posixpath.dirname(path)]):
        node.run(["install", "-d", posixpath.dirname(path)], change=True)
    node.put_if_changed(path, text, mode="0600")


# --- the backups there ------------------------------------------------------------------


def _found(node, p: dict) -> dict:
    """What is there: the backups, and the schedule's latest run (its .scheduled.json)."""
    status = node.get(posixpath.join(_dir(p), ".scheduled.json"))
    try:
        scheduled = None if status is None else json.loads(status)
    except ValueError:
        scheduled = {"ok": False, "error": "unreadable .scheduled.json"}
    return {"backups": _list(node, p), "scheduled": scheduled}


def _list(node, p: dict) -> list:
    """The VM's backups, oldest first: file, kind, bytes."""
    # A backup qemu-img cannot read (its chain broken) fails the listing: never unseen.
    script = (
        f'for f in {shlex.quote(_dir(p))}/*.qcow2; do [ -f "$f" ] || continue; '
        'qemu-img info -U --output=json -- "$f" || exit 1; echo "#---"; done'
    )
    found = []
    for block in node.run(["sh", "-c", script]).stdout.split("#---"):
        if block.strip():
            info = json.loads(block)
            found.append(
                {
                    "file": info["filename"],
                    "kind": "incremental" if info.get("backing-filename") else "full",
                    "bytes": int(info.get("actual-size") or 0),
                }
            )
    return sorted(found, key=lambda b: b["file"])


class VmBackup(pulumi.dynamic.Resource, module="cephkvm", name="VmBackup"):
    backups: pulumi.Output[list]
    last: pulumi.Output[dict]
    scheduled: pulumi.Output[dict]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["ssh_private_key"])
        )
        super().__init__(
            VmBackupProvider(),
            name,
            {"backups": None, "last": None, "scheduled": None, **props},
            opts,
        )
