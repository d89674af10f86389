import pytest

from providers.node_prep import NodePrepProvider
from tests.unit.fakes import Crash, FakeHost, connection

pytestmark = pytest.mark.unit

CONN = connection("node1")
PROPS = {
    "node": "node1",
    "connection": CONN,
    "packages": ["ceph-mon", "qemu-utils"],
    "daemons": ["virtlogd", "libvirtd"],
}


def test_create_installs_missing_packages_and_starts_daemons(host):
    host.packages = {"ceph-mon"}
    result = NodePrepProvider().create(dict(PROPS))
    assert host.packages >= {"ceph-mon", "qemu-utils"}
    assert host.running == {"virtlogd", "libvirtd"}
    assert result.outs["installed"] == ["qemu-utils"]
    assert result.outs["started"] == ["virtlogd", "libvirtd"]


def test_create_on_a_ready_node_changes_nothing(host):
    host.packages = {"ceph-mon", "qemu-utils"}
    host.running = {"virtlogd", "libvirtd"}
    result = NodePrepProvider().create(dict(PROPS))
    assert host.changes == []
    assert result.outs["installed"] == [] and result.outs["started"] == []


@pytest.mark.parametrize("step", [1, 2, 3])
def test_crash_at_step_n_then_rerun_converges(host, step):
    host.log.crash_at = step
    with pytest.raises(Crash):
        NodePrepProvider().create(dict(PROPS))
    NodePrepProvider().create(dict(PROPS))
    assert host.running == {"virtlogd", "libvirtd"}
    assert host.packages >= {"ceph-mon", "qemu-utils"}
    starts = [c for c in host.changes if c.endswith(" -d")]
    assert len(starts) == 2, "each daemon is started exactly once"


def test_delete_stops_only_what_it_started(host):
    host.running = {"virtlogd"}
    host.packages = {"ceph-mon", "qemu-utils"}
    outs = NodePrepProvider().create(dict(PROPS)).outs
    NodePrepProvider().delete("node1", outs)
    assert host.running == {"virtlogd"}


def test_read_reports_a_stopped_daemon_and_update_restarts_it(host):
    host.packages = {"ceph-mon", "qemu-utils"}
    provider = NodePrepProvider()
    outs = provider.create(dict(PROPS)).outs
    host.running.discard("libvirtd")
    read = provider.read("node1", outs).outs
    assert read["daemons"] == ["virtlogd"]
    assert provider.diff("node1", read, dict(PROPS)).changes
    provider.update("node1", read, dict(PROPS))
    assert "libvirtd" in host.running


def test_systemd_nodes_use_units(host):
    host.systemd = True
    host.packages = {"ceph-mon", "qemu-utils"}
    NodePrepProvider().create(dict(PROPS))
    assert "systemctl enable --now libvirtd" in host.changes
    assert host.running == {"virtlogd", "libvirtd"}


def test_check_names_the_field_and_the_fix():
    bad = {**PROPS, "packages": ["ok", "rm -rf /"], "daemons": ["sshd"]}
    failures = NodePrepProvider().check({}, bad).failures
    props = {f.property: f.reason for f in failures}
    assert "packages[1]" in props and "daemons[0]" in props
    assert "not one of 'virtlogd' or 'libvirtd'" in props["daemons[0]"]


@pytest.mark.parametrize(
    "change, replaces, changes",
    [
        ({}, [], False),
        ({"packages": ["ceph-mon"]}, [], True),
        ({"daemons": ["libvirtd"]}, [], True),
        ({"node": "node2"}, ["node"], True),
    ],
)
def test_diff_table(change, replaces, changes):
    old = {**PROPS, "installed": [], "started": [], "running": PROPS["daemons"]}
    result = NodePrepProvider().diff("node1", old, {**PROPS, **change})
    assert result.changes == changes
    assert result.replaces == replaces


def test_diff_ignores_engine_float_numbers():
    old = {**PROPS, "connection": {**CONN, "port": 22.0}}
    new = {**PROPS, "connection": {**CONN, "port": 22}}
    assert not NodePrepProvider().diff("node1", old, new).changes


def test_a_repaired_adopted_daemon_is_still_not_stopped_on_delete(host):
    host.packages = {"ceph-mon", "qemu-utils"}
    host.running = {"virtlogd", "libvirtd"}
    provider = NodePrepProvider()
    outs = provider.create(dict(PROPS)).outs
    host.running.discard("libvirtd")
    outs = provider.update("node1", provider.read("node1", outs).outs, dict(PROPS)).outs
    provider.delete("node1", outs)
    assert host.running == {"virtlogd", "libvirtd"}


def test_a_non_root_user_joins_libvirt_once_and_leaves_on_delete(host):
    host.packages = {"ceph-mon", "qemu-utils"}
    host.running = {"virtlogd", "libvirtd"}
    props = {**PROPS, "connection": {**CONN, "user": "cephsvc"}, "groups": ["libvirt"]}
    provider = NodePrepProvider()
    outs = provider.create(dict(props)).outs
    assert host.groups["cephsvc"] == {"libvirt"} and outs["joined"] == ["libvirt"]
    assert provider.create(dict(props)).outs["joined"] == []  # already a member
    host.groups["cephsvc"].clear()
    read = provider.read("node1", outs).outs
    assert read["groups"] == [] and provider.diff("node1", read, dict(props)).changes
    outs = provider.update("node1", read, dict(props)).outs
    assert host.groups["cephsvc"] == {"libvirt"} and outs["joined"] == ["libvirt"]
    provider.delete("node1", outs)
    assert host.groups["cephsvc"] == set()
    assert [c for c in host.changes if c.startswith("gpasswd")] == ["gpasswd -d cephsvc libvirt"]


def test_root_needs_no_group(host):
    host.packages = {"ceph-mon", "qemu-utils"}
    host.running = {"virtlogd", "libvirtd"}
    NodePrepProvider().create({**PROPS, "groups": ["libvirt"]})
    assert host.changes == [] and host.groups == {}


def test_the_init_system_is_asked_once_per_node_and_run():
    from providers import services

    host = FakeHost(systemd=True)
    assert all(services.has_systemd(host.session()) for _ in range(3))
    asked = [line for line in host.log.lines if "/run/systemd/system" in line]
    assert asked == ["test -d /run/systemd/system"]
