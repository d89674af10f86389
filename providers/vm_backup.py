"""VmBackup: one VM's backups, taken while it runs, as qcow2 files in `target/VM/`.

Each backup reads the VM's disk from a CephFS snapshot taken for it (the guest frozen
around it: vm_snapshot.quiesced), so the copy is of one moment however long it takes. A full
backup is the whole disk, template included, standing alone (`qemu-img convert`); an
incremental one holds only what differs from the previous backup and names it as its
backing file (relative, so the directory can be moved): an empty overlay on the snapshot,
rebased onto the previous backup, which writes exactly the differing data. Every
`full_every`-th backup is full. Beyond `keep`, the oldest goes; the next one first takes in
its data (`qemu-img rebase -b ""`), so every kept backup restores on its own terms.

When: one as soon as the VM has a backup policy, and one whenever `now` changes. Checks
before acting: a guest left frozen is thawed, a killed run's temporary snapshot and partial
file are removed. Delete keeps every backup (the VM's data outlives the VM); nothing here
writes the VM's live disk. A new VM starts from a backup with `template: {backup: FILE}`
(vm_storage.restore_backup).
"""

from __future__ import annotations

import datetime
import json
import posixpath
import shlex
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, vm_snapshot
from providers.errors import Failure
from providers.schema.kvm import BackupInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/kvm.py BackupInputs (+ ssh_private_key?)
# outputs: backups: [{file, kind (full | incremental), bytes}], oldest first;
#          last: {file, kind, bytes, consistency, seconds} of the latest one this stack took
INPUTS = BackupInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
TEMP = "@backup+"  # VM@backup+STAMP: a snapshot name no configured snapshot can have


class VmBackupProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        last = _take(self.node, props)
        _prune(self.node, props)
        return CreateResult(
            props["vm"], {**props, "last": last, "backups": _list(self.node, props)}
        )

    def read(self, id_, props):
        return ReadResult(id_, {**props, "backups": _list(self.node, props)})

    def update(self, _id, olds, news):
        last = olds.get("last")
        if olds.get("now") != news.get("now"):
            last = _take(self.node, news)
        _prune(self.node, news)
        return UpdateResult({**news, "last": last, "backups": _list(self.node, news)})

    def delete(self, _id, props):
        _clean_leftovers(self.node, props)  # the backups themselves stay


# --- taking one -------------------------------------------------------------------------


def _dir(p: dict) -> str:
    return posixpath.join(p["target"], p["vm"])


def _take(node, p: dict) -> dict:
    started = datetime.datetime.now(datetime.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    _clean_leftovers(node, p)
    chain = _list(node, p)
    recent = 0  # incremental backups since the last full one
    for b in reversed(chain):
        if b["kind"] == "full":
            break
        recent += 1
    full = not chain or recent + 1 >= p["full_every"]
    out = posixpath.join(_dir(p), stamp + ".qcow2")
    if node.ok(["test", "-e", out]):
        raise Failure(f"backup of {p['vm']}: {out} exists (one per second); run up again")
    node.run(["mkdir", "-p", "-m", "0700", "--", _dir(p)], change=True)  # a disk's data
    snap = posixpath.join(p["storage"], "virtualmachines", ".snap", p["vm"] + TEMP + stamp)
    consistency = vm_snapshot.quiesced(node, p, [snap], f"backup of {p['vm']}") or "as found"
    try:
        src = posixpath.join(snap, p["vm"] + ".qcow2")
        _write(node, src, out + ".part", None if full else chain[-1]["file"])
        node.run(["chmod", "0600", "--", out + ".part"], change=True)
        node.run(["mv", "-f", "--", out + ".part", out], change=True)
    finally:
        node.run(["rmdir", "--", snap], change=True, check=False)
    size = int(node.run(["stat", "-c", "%s", "--", out]).stdout.strip() or 0)
    seconds = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    return {
        "file": out,
        "kind": "full" if full else "incremental",
        "bytes": size,
        "consistency": consistency,
        "seconds": round(seconds, 1),
    }


def _write(node, src: str, part: str, previous: str | None) -> None:
    """src into part: all of it (full), or only what differs from the previous backup."""
    if previous is None:
        node.run(["qemu-img", "convert", "-O", "qcow2", src, part], change=True, timeout=7200)
        return
    node.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", src, part], change=True
    )
    # Safe mode compares the old backing (the snapshot) with the new (the previous backup)
    # and writes only the sectors that differ; the name is relative to the directory.
    node.run(
        ["qemu-img", "rebase", "-f", "qcow2", "-F", "qcow2", "-b", posixpath.basename(previous)]
        + [part],
        change=True,
        timeout=7200,
    )


def _clean_leftovers(node, p: dict) -> None:
    """What a killed run left: its temporary snapshot, its partial file."""
    snaps = posixpath.join(p["storage"], "virtualmachines", ".snap")
    script = (
        f"for s in {shlex.quote(snaps)}/{shlex.quote(p['vm'] + TEMP)}*; do "
        '[ -d "$s" ] && rmdir -- "$s"; done; '
        f"rm -f -- {shlex.quote(_dir(p))}/*.part; true"
    )
    node.run(["sh", "-c", script], change=True)


# --- the backups there ------------------------------------------------------------------


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


def _prune(node, p: dict) -> None:
    chain = _list(node, p)
    while len(chain) > p["keep"]:
        oldest, after = chain[0], chain[1]
        if after["kind"] == "incremental":  # it becomes full: the oldest's data goes in
            node.run(
                ["qemu-img", "rebase", "-f", "qcow2", "-b", "", after["file"]],
                change=True,
                timeout=7200,
            )
            after["kind"] = "full"
        node.run(["rm", "-f", "--", oldest["file"]], change=True)
        chain = chain[1:]


class VmBackup(pulumi.dynamic.Resource, module="cephkvm", name="VmBackup"):
    backups: pulumi.Output[list]
    last: pulumi.Output[dict]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["ssh_private_key"])
        )
        super().__init__(VmBackupProvider(), name, {"backups": None, "last": None, **props}, opts)
