import pytest

from providers.ceph_cluster import CephClusterProvider, render_conf
from tests.unit.ceph_fakes import CephWorld, bring_up, cluster_props
from tests.unit.fakes import Crash

pytestmark = pytest.mark.unit
NAMES = ["node1", "node2", "node3"]
IDENTITY = ("/var/lib/ceph/tmp/ceph.fsid", "/var/lib/ceph/tmp/ceph.bootstrap.keyring",
            "/var/lib/ceph/tmp/ceph.monmap")


@pytest.fixture
def world(monkeypatch):
    w = CephWorld().serve(monkeypatch)
    return w


def props(world, **kw):
    return cluster_props(world, **kw)


def test_create_writes_identity_conf_and_keyring_and_starts_no_daemon(world):
    outs = CephClusterProvider().create(props(world)).outs
    fsid = outs["fsid"]
    monmaps = {n.files["/var/lib/ceph/tmp/ceph.monmap"] for n in world.nodes.values()}
    assert monmaps == {"MONMAP node1 node2 node3"}, "one initial monmap, the same bytes"
    for node in world.nodes.values():
        assert node.files["/var/lib/ceph/tmp/ceph.fsid"] == fsid + "\n"
        assert f"fsid = {fsid}" in node.files["/etc/ceph/ceph.conf"]
        assert "pid_file = /run/ceph/$cluster-$name.pid" in node.files["/etc/ceph/ceph.conf"]
        assert node.modes["/etc/ceph/ceph.client.admin.keyring"] == ("600", "root:root")
        assert node.modes["/var/lib/ceph/tmp/ceph.bootstrap.keyring"] == ("600", "ceph:ceph")
        assert node.running == set()
    assert outs["mon_addresses"][0] == "[v2:192.0.2.11:3300,v1:192.0.2.11:6789]"
    assert outs["mon_hosts"] == ["192.0.2.11:6789", "192.0.2.12:6789", "192.0.2.13:6789"]
    assert outs["admin_key"] in world.nodes["node2"].files[
        "/etc/ceph/ceph.client.admin.keyring"]


def test_second_run_changes_nothing_and_keeps_the_fsid(world):
    first = CephClusterProvider().create(props(world)).outs
    world.log.clear()
    again = CephClusterProvider().create(props(world)).outs
    assert world.changes == []
    assert again["fsid"] == first["fsid"] and again["admin_key"] == first["admin_key"]


def test_the_admin_key_never_appears_in_a_command_line(world):
    outs = bring_up(world)
    assert not [line for _, _, line in world.log if outs["admin_key"] in line]


@pytest.mark.parametrize("step", range(1, 16))  # 15 changes in all
def test_crash_at_step_n_then_rerun_converges_with_one_fsid(world, step):
    world.crash_at = step
    with pytest.raises(Crash):
        CephClusterProvider().create(props(world))
    fsids = {n.files.get("/var/lib/ceph/tmp/ceph.fsid") for n in world.nodes.values()} - {None}
    outs = CephClusterProvider().create(props(world)).outs
    assert fsids <= {outs["fsid"] + "\n"}, "the fsid of the first attempt was reused"
    monmaps = {n.files["/var/lib/ceph/tmp/ceph.monmap"] for n in world.nodes.values()}
    assert len(monmaps) == 1
    bring_up(world)  # the mons form a quorum from what the cluster left
    assert world.quorum() == NAMES


def test_a_mon_added_later_gets_identity_and_conf_but_no_initial_monmap(world):
    provider = CephClusterProvider()
    old = provider.create(props(world, mons=["node1", "node2"])).outs
    new = props(world, mons=NAMES)
    assert provider.diff(old["fsid"], old, new).changes
    outs = provider.update(old["fsid"], old, new).outs
    node3 = world.nodes["node3"].files
    assert outs["fsid"] == old["fsid"] and node3["/var/lib/ceph/tmp/ceph.fsid"] == \
        old["fsid"] + "\n"
    assert "/var/lib/ceph/tmp/ceph.monmap" not in node3
    assert "192.0.2.13:3300" in node3["/etc/ceph/ceph.conf"]


def test_read_finds_the_cluster_by_its_fsid_and_reports_a_wiped_one_gone(world):
    provider = CephClusterProvider()
    outs = provider.create(props(world)).outs
    assert provider.read(outs["fsid"], outs).outs["fsid"] == outs["fsid"]
    for node in world.nodes.values():
        node.files.pop("/var/lib/ceph/tmp/ceph.fsid")
    assert provider.read(outs["fsid"], outs).id == ""


def test_delete_is_refused_without_allow_data_loss(world):
    outs = bring_up(world)
    with pytest.raises(Exception, match="allow_data_loss"):
        CephClusterProvider().delete(outs["fsid"], outs)
    assert world.quorum() == NAMES
    assert all(n.files.get(IDENTITY[0]) for n in world.nodes.values())


def test_delete_with_allow_data_loss_removes_identity_conf_and_keys(world):
    outs = CephClusterProvider().create(props(world, allow_data_loss=True)).outs
    CephClusterProvider().delete(outs["fsid"], outs)
    for node in world.nodes.values():
        assert not [p for p in node.files if p.startswith(("/etc/ceph/", "/var/lib/ceph/"))]


@pytest.mark.parametrize("change, replaces", [
    ({}, None),
    ({"mons": ["node1"]}, []),
    ({"public_network": "198.51.100.0/24"}, []),
    ({"allow_data_loss": True}, []),
    ({"cluster_name": "other"}, ["cluster_name"]),
    ({"pin_fsid": "0b8a3e2c-6f49-4a8e-9a43-2c1e5d5b7a10"}, ["pin_fsid"]),
])
def test_diff_table(world, change, replaces):
    old = {**props(world), "fsid": "f", "admin_key": "k"}
    result = CephClusterProvider().diff("f", old, {**props(world), **change})
    assert result.changes == (replaces is not None)
    assert result.replaces == (replaces or [])


def test_check_names_the_field(world):
    bad = {**props(world), "mons": ["node9"], "public_network": ""}
    failures = {f.property: f.reason for f in CephClusterProvider().check({}, bad).failures}
    assert "node9" in failures["mons"] and "public_network" in failures


def test_conf_lists_every_mon_v2_and_v1(world):
    text = render_conf(props(world), "f00")
    assert "mon_host = [v2:192.0.2.11:3300,v1:192.0.2.11:6789] [v2:192.0.2.12:3300," in text
    assert "mon_initial_members = node1, node2, node3" in text


def test_preflight_refuses_clock_skew_before_changing_anything(world):
    world.nodes["node2"].clock_offset = 2.0
    with pytest.raises(Exception, match=r"clocks of node1 and node2 differ by (1\.9|2\.0)"):
        CephClusterProvider().create(props(world))
    assert world.changes == []


def test_preflight_refuses_an_unreachable_node_by_name(world):
    world.nodes["node3"].unreachable = {"node1"}
    with pytest.raises(Exception, match="node3 cannot reach node1 at 192.0.2.11"):
        CephClusterProvider().create(props(world))
    assert world.changes == []
