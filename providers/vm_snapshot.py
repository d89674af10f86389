"""VmSnapshot: one named, point-in-time copy of a VM's disk and seed, taken while it runs.

It is a CephFS snapshot, named VM@NAME, of each directory that holds them
(vm_storage.snapshot_dirs): instant, nothing copied (CephFS keeps the old data of what
changes later), and on the shared storage, so it survives the VM's migrations. Around it
the guest's filesystems are frozen through its agent (`consistency: quiesced`); a guest
without an agent, or a VM not running, is taken as it stands (`crash-consistent`, with
why). The other disks of the directory are in that snapshot too; only this name refers to
it, and unchanged data is shared, so they cost nothing.

Checks before acting: a guest that a killed run left frozen is thawed first; a snapshot
that exists is kept (the re-run after a kill). Delete removes the two snapshots only; the
VM's live disk is never touched. A new VM starts from one with `template: {snapshot:
VM@NAME}` (vm_storage.restore_disk).
"""

from __future__ import annotations

import datetime
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, guest_agent, libvirt_conn, vm_storage
from providers.errors import Failure
from providers.schema.kvm import SnapshotInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/kvm.py SnapshotInputs (+ ssh_private_key?)
# outputs: paths (the two snapshot directories), consistency, taken (UTC, ISO 8601)
INPUTS = SnapshotInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class VmSnapshotProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        dirs = vm_storage.snapshot_dirs(props["storage"], props["vm"], props["name"])
        what = f"snapshot {props['vm']}@{props['name']}"
        consistency = quiesced(self.node, props, dirs, what) or "as found: an earlier run took it"
        taken = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        outs = {"paths": list(dirs), "consistency": consistency, "taken": taken}
        return CreateResult(f"{props['vm']}@{props['name']}", {**props, **outs})

    def read(self, id_, props):
        dirs = vm_storage.snapshot_dirs(props["storage"], props["vm"], props["name"])
        if not self.node.ok(["test", "-d", dirs[0]]):
            return ReadResult("", {})  # removed by hand: `up` takes a new one
        return ReadResult(id_, props)

    def update(self, _id, olds, news):
        # Only state fields exist besides replaced ones (where the VM runs): nothing to do.
        return UpdateResult({**olds, **news})

    def delete(self, _id, props):
        node = self.node
        for d in vm_storage.snapshot_dirs(props["storage"], props["vm"], props["name"]):
            if node.ok(["test", "-d", d]):
                node.run(["rmdir", "--", d], change=True)


# --- taking one -------------------------------------------------------------------------


def quiesced(node, p: dict, dirs, what: str) -> str | None:
    """The CephFS snapshots `dirs` that are not there yet, made with p['vm']'s guest frozen
    around them; a guest that a killed run left frozen is thawed first. Their consistency,
    or None when every one was there already."""
    with libvirt_conn.connect(node) as conn:
        dom = libvirt_conn.own(conn, {**p, "name": p["vm"]})
        guest_agent.thaw_left_frozen(dom)
        missing = [d for d in dirs if not node.ok(["test", "-d", d])]
        if not missing:
            return None
        disk = vm_storage.paths({**p, "name": p["vm"]})["disk"]
        if not node.ok(["test", "-f", disk]):
            raise Failure(
                f"{what}: {p['node']} has no disk {disk} (is the VM's storage mounted "
                "there?). Nothing was changed."
            )
        with guest_agent.frozen(dom) as why_not:
            for d in missing:
                _mkdir(node, p, d, what)
    return f"crash-consistent ({why_not})" if why_not else "quiesced"


def _mkdir(node, p: dict, path: str, what: str) -> None:
    got = node.run(["mkdir", "--", path], change=True, check=False)
    if got.exit_code == 0:
        return
    fix = (
        "the CephFS client of that mount may not make snapshots (its key needs the 's' "
        "flag: `ceph auth caps` with 'allow rws' for mds, then remount), or the "
        "filesystem forbids them (`ceph fs set FS allow_new_snaps true`)"
        if "not permitted" in got.stderr
        else "see the error"
    )
    raise Failure(
        f"{what} on {p['node']}: mkdir {path} exited {got.exit_code}: {got.stderr.strip()}; {fix}"
    )


class VmSnapshot(pulumi.dynamic.Resource, module="cephkvm", name="VmSnapshot"):
    paths: pulumi.Output[list]
    consistency: pulumi.Output[str]
    taken: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        outputs = {"paths": None, "consistency": None, "taken": None}
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["ssh_private_key"])
        )
        super().__init__(VmSnapshotProvider(), name, {**outputs, **props}, opts)
