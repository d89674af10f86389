"""BackupSchedule under systemd, on a fake node: the script and both units written once, the
timer enabled, its ExecStart quoted for systemd, delete removes what it made."""

import pytest

from providers import backup_schedule, vm_backup
from providers.backup_schedule import BackupScheduleProvider
from tests.unit.fakes import FakeHost, connection

pytestmark = pytest.mark.unit
SERVICE = "/etc/systemd/system/cephkvm-backup.service"
TIMER = "/etc/systemd/system/cephkvm-backup.timer"


@pytest.fixture
def host(monkeypatch):
    fake = FakeHost(systemd=True)
    fake.dirs.add("/etc/systemd/system")
    monkeypatch.setattr(backup_schedule.base, "session", lambda props, **_: fake.session())
    return fake


def props(storage="/mnt/cephfs"):
    return {"node": "node1", "connection": connection("node1"), "storage": storage}


def test_create_writes_the_script_and_units_and_starts_the_timer_once(host):
    BackupScheduleProvider().create(props())
    assert host.files[vm_backup.SCRIPT] == vm_backup.SOURCE
    assert (
        f'ExecStart={vm_backup.SCRIPT} due "/mnt/cephfs/backup-policies"\n' in (host.files[SERVICE])
    )
    assert "OnCalendar=minutely" in host.files[TIMER]
    assert "cephkvm-backup.timer" in host.running
    before = len(host.changes)
    BackupScheduleProvider().create(props())  # a re-run: nothing to write or start
    assert len(host.changes) == before


def test_a_storage_path_reaches_systemd_as_one_argument_with_its_specifiers_escaped(host):
    BackupScheduleProvider().create(props('/mnt/ceph fs/100%"$x'))
    line = next(ln for ln in host.files[SERVICE].splitlines() if ln.startswith("ExecStart="))
    assert line.endswith(' due "/mnt/ceph fs/100%%\\"$$x/backup-policies"'), line


def test_delete_stops_the_timer_and_removes_its_units_not_the_script(host):
    BackupScheduleProvider().create(props())
    BackupScheduleProvider().delete("node1", props())
    assert "cephkvm-backup.timer" not in host.running
    assert SERVICE not in host.files and TIMER not in host.files
    assert vm_backup.SCRIPT in host.files, "VmBackup still takes backups with it"
