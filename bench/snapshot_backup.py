"""Benchmark: a VM's snapshot, full backup and incremental backup (64 MiB written between),
for the lab VM as booted (small disk) and after 512 MiB more data (larger disk). References
from the same run: a no-op `up` for the snapshot's `up`, and a plain `qemu-img convert` of
the live disk on its node (what a backup does without snapshot or freeze) for the full
backup; the incremental's size as a share of the full one. Prints figures; asserts nothing.
Needs a running lab (`python -m lab up`) and the lab guest image (`make guest-image`)."""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lab  # noqa: E402
from tests.cli import Project  # noqa: E402

VM = "lab-vm1"
TARGET = "/mnt/cephfs/bench-backups"


def vm(config: dict) -> dict:
    return config["cephkvm:vms"][0]


def timed_up(project: Project, change=None) -> float:
    if change:
        project.edit_config(change)
    t0 = time.monotonic()
    project.run("up", "--yes", "--skip-preview")
    return time.monotonic() - t0


def write(project: Project, mib: int, name: str) -> None:
    """mib MiB of random data into a file in the guest, over SSH from its node."""
    outs = project.outputs()["vms"][VM]
    argv = ["ssh", "-i", lab.inventory()["ssh"]["key_file"], "-o", "IdentitiesOnly=yes"]
    argv += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"]
    argv += ["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    script = f"sudo dd if=/dev/urandom of=/var/tmp/{name} bs=1M count={mib} status=none && sync"
    got = lab.run(outs["host"], [*argv, f"debian@{outs['addresses'][0]}", script], timeout=900)
    if got.returncode != 0:
        raise RuntimeError(f"writing in the guest failed: {got.stderr}")


def reference_copy(host: str) -> float:
    disk = f"/mnt/cephfs/virtualmachines/{VM}.qcow2"
    t0 = time.monotonic()
    lab.run(host, ["qemu-img", "convert", "-U", "-O", "qcow2", disk, f"{TARGET}.ref"], timeout=3600)
    took = time.monotonic() - t0
    lab.run(host, ["rm", "-f", f"{TARGET}.ref"])
    return took


def measure(project: Project, label: str, generation: int) -> None:
    host = project.outputs()["vms"][VM]["host"]
    noop = timed_up(project)
    snap = timed_up(project, lambda c: vm(c).update(snapshots=[f"bench{generation}"]))
    print(f"{label}: snapshot up {snap:.1f} s / no-op up {noop:.1f} s = {snap / noop:.2f}")
    backup = {"target": TARGET, "keep": 4, "now": f"full{generation}", "full_every": 1}
    timed_up(project, lambda c: vm(c).update(backup=backup))
    full = project.outputs()["vms"][VM]["last_backup"]
    ref = reference_copy(host)
    print(
        f"{label}: full backup {full['seconds']:.1f} s, {full['bytes'] / 2**20:.0f} MiB "
        f"({full['consistency']}); plain qemu-img convert of the live disk {ref:.1f} s: "
        f"ratio {full['seconds'] / ref:.2f}"
    )
    write(project, 64, f"bench-inc{generation}")
    inc_policy = {**backup, "now": f"inc{generation}", "full_every": 7}
    timed_up(project, lambda c: vm(c).update(backup=inc_policy))
    inc = project.outputs()["vms"][VM]["last_backup"]
    print(
        f"{label}: incremental backup after 64 MiB written {inc['seconds']:.1f} s, "
        f"{inc['bytes'] / 2**20:.0f} MiB = {inc['bytes'] / full['bytes']:.3f} of the full one"
    )
    project.edit_config(lambda c: [vm(c).pop(k, None) for k in ("snapshots", "backup")])
    project.run("up", "--yes", "--skip-preview")


def main() -> None:
    if not lab.inventory():
        sys.exit("the lab is down: run `python -m lab up` first")
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp, "lab")
        try:
            project.run("up", "--yes", "--skip-preview")
            measure(project, "small disk (as booted)", 1)
            write(project, 512, "bench-bulk")
            measure(project, "larger disk (+512 MiB)", 2)
        finally:
            project.run("destroy", "--yes", "--skip-preview", check=False)
            for n in lab.inventory()["nodes"][:1]:
                lab.run(n, ["rm", "-rf", "--", TARGET, f"{TARGET}.ref"])


if __name__ == "__main__":
    main()
