"""BackupSchedule: one KVM node's timer for scheduled backups. Every minute it runs
`cephkvm-backup due` (providers/vm_backup.sh), which backs up each VM running on the node
whose policy (written by its VmBackup with `every`) says one is due, without pulumi. A VM
that migrates is backed up by its new node: the policies and the backups sit on the shared
VM storage, and the newest backup's stamp says when the next is due.

Under systemd: cephkvm-backup.timer and its oneshot service. Without systemd (the lab): the
script's own loop, tracked by its pid file. Delete stops it; the backups and the script stay
(a VmBackup still takes backups with it).
"""

from __future__ import annotations

import posixpath
import shlex
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, services, vm_backup
from providers.schema.kvm import BackupScheduleInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/kvm.py BackupScheduleInputs (+ ssh_private_key?)
# outputs: none beyond its inputs (ensure: "down" when read finds the timer stopped)
INPUTS = BackupScheduleInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
TICK = 60  # seconds between looks at the policies (`every` is counted from backup stamps)
UNIT_DIR = "/etc/systemd/system"
LOG = "/var/log/cephkvm/backup.log"


class BackupScheduleProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        _converge(self.node, props)
        return CreateResult(props["node"], {**props})

    def read(self, id_, props):
        node = self.node
        up = services.is_running(node, _timer(props), services.has_systemd(node))
        return ReadResult(id_, {**props, "ensure": "up" if up else "down"})

    def update(self, _id, olds, news):
        node, systemd = self.node, services.has_systemd(self.node)
        if olds.get("storage") != news["storage"] and not systemd:
            services.stop(node, _timer(olds), systemd)  # the loop reads the old directory
        _converge(node, news)
        return UpdateResult({**news})

    def delete(self, _id, props):
        node, systemd = self.node, services.has_systemd(self.node)
        services.stop(node, _timer(props), systemd)
        if systemd:
            units = [posixpath.join(UNIT_DIR, f"cephkvm-backup.{u}") for u in ("timer", "service")]
            node.run(["rm", "-f", "--", *units], change=True)
            node.run(["systemctl", "daemon-reload"], change=True)


def _policies(props: dict) -> str:
    return posixpath.join(props["storage"], vm_backup.POLICIES)


def _timer(props: dict) -> services.Daemon:
    """The systemd timer, or the script's own loop (a shell: its binary is /bin/sh's)."""
    pid_file = "/run/cephkvm-backup.pid"
    loop = [vm_backup.SCRIPT, "loop", _policies(props), str(TICK), pid_file]
    start = (
        f"mkdir -p {posixpath.dirname(LOG)} && setsid {shlex.join(loop)} </dev/null >>{LOG} 2>&1 &"
    )
    return services.Daemon("cephkvm-backup.timer", ("sh", "-c", start), pid_file, "/bin/sh")


def _units(props: dict) -> dict:
    service = (
        "[Unit]\nDescription=cephkvm: the backups due of the VMs on this node\n"
        "After=libvirtd.service\n\n[Service]\nType=oneshot\n"
        f"ExecStart={vm_backup.SCRIPT} due {_unit_arg(_policies(props))}\n"
    )
    timer = (
        "[Unit]\nDescription=cephkvm: look for backups due every minute\n\n"
        "[Timer]\nOnCalendar=minutely\n\n[Install]\nWantedBy=timers.target\n"
    )
    return {"cephkvm-backup.service": service, "cephkvm-backup.timer": timer}


def _unit_arg(value: str) -> str:
    """One argument of a unit's ExecStart: quoted, with systemd's own % and $ escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


def _converge(node, props: dict) -> None:
    vm_backup.install(node)
    systemd = services.has_systemd(node)
    if systemd:
        written = [
            node.put_if_changed(posixpath.join(UNIT_DIR, name), text)
            for name, text in _units(props).items()
        ]
        if any(written):
            node.run(["systemctl", "daemon-reload"], change=True)
    services.ensure_running(node, _timer(props), systemd)


class BackupSchedule(pulumi.dynamic.Resource, module="cephkvm", name="BackupSchedule"):
    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["ssh_private_key"])
        )
        super().__init__(BackupScheduleProvider(), name, dict(props), opts)
