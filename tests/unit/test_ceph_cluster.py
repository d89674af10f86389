import pytest

from providers import base, services
from providers.ceph_cluster import CephClusterProvider, render_conf
from tests.unit.ceph_fakes import CephWorld
from tests.unit.fakes import Crash

pytestmark = pytest.mark.unit
NAMES = ["node1", "node2", "node3"]


@pytest.fixture
def world(monkeypatch):
    w = CephWorld()
    monkeypatch.setattr(base, "session",
                        lambda props: w.nodes[props["connection"]["name"]].session())
    return w


def props(world, **kw):
    p = {"public_network": "192.0.2.0/24", "nodes": world.props_nodes(), "mons": NAMES,
         "mgrs": NAMES, "mdss": NAMES, "options": {"mon": {"mon_data_avail_warn": 2}},
         "health_timeout": 2, **kw}
    result = CephClusterProvider().check({}, p)
    assert not result.failures, result.failures
    return result.inputs


def test_bootstrap_makes_each_mon_once_and_starts_every_daemon(world):
    outs = CephClusterProvider().create(props(world)).outs
    assert world.mkfs == {n: 1 for n in NAMES}
    assert world.quorum() == NAMES
    assert world.running("mgr") == NAMES and world.running("mds") == NAMES
    fsid = outs["fsid"]
    for node in world.nodes.values():
        assert f"fsid = {fsid}" in node.files["/etc/ceph/ceph.conf"]
        assert "pid_file = /run/ceph/$cluster-$name.pid" in node.files["/etc/ceph/ceph.conf"]
        assert node.modes["/etc/ceph/ceph.client.admin.keyring"] == ("600", "root:root")
    assert world.config["mon"]["mon_data_avail_warn"] == "2"
    assert world.config["mon"]["auth_allow_insecure_global_id_reclaim"] == "false"
    assert outs["mon_addresses"][0] == "[v2:192.0.2.11:3300,v1:192.0.2.11:6789]"
    assert outs["version"] == "16.2.15" and outs["health"] == "HEALTH_OK"
    assert outs["admin_key"] in world.nodes["node2"].files[
        "/etc/ceph/ceph.client.admin.keyring"]


def test_second_run_changes_nothing_and_keeps_the_fsid(world):
    first = CephClusterProvider().create(props(world)).outs
    world.log.clear()
    again = CephClusterProvider().create(props(world)).outs
    assert world.changes == []
    assert again["fsid"] == first["fsid"] and again["admin_key"] == first["admin_key"]


def test_the_admin_key_never_appears_in_a_command_line(world):
    outs = CephClusterProvider().create(props(world)).outs
    assert not [line for _, _, line in world.log if outs["admin_key"] in line]


@pytest.mark.parametrize("step", range(1, 60, 2))  # 58 changes in all
def test_crash_at_step_n_then_rerun_converges_with_one_fsid(world, step):
    world.crash_at = step
    with pytest.raises(Crash):
        CephClusterProvider().create(props(world))
    fsids = {n.files.get("/var/lib/ceph/tmp/ceph.fsid") for n in world.nodes.values()} - {None}
    outs = CephClusterProvider().create(props(world)).outs
    assert world.quorum() == NAMES
    assert all(count == 1 for count in world.mkfs.values()), "a mon was made twice"
    assert all(count == 1 for count in world.starts.values()), "a daemon was started twice"
    assert fsids <= {outs["fsid"] + "\n"}, "the fsid of the first attempt was reused"


def test_systemd_nodes_use_ceph_units(world):
    for node in world.nodes.values():
        node.systemd = True
    CephClusterProvider().create(props(world))
    lines = [line for _, _, line in world.log]
    assert "systemctl enable --now ceph-mon@node1" in lines
    assert "systemctl enable --now ceph-mds@node3" in lines
    assert not [line for line in lines if line.startswith("/usr/bin/ceph-")]


def test_direct_daemons_are_started_with_their_pid_file_binary(world):
    CephClusterProvider().create(props(world))
    daemon = services.ceph_daemon("mon", "node1")
    assert daemon.pid_file == "/run/ceph/ceph-mon.node1.pid"
    assert "/usr/bin/ceph-mon --cluster ceph -i node1 --setuser ceph --setgroup ceph" in [
        line for _, _, line in world.log]


def test_a_killed_mon_and_mds_show_as_drift_and_update_restarts_them(world):
    provider = CephClusterProvider()
    outs = provider.create(props(world)).outs
    world.nodes["node3"].running -= {("mon", "node3"), ("mds", "node3")}
    read = provider.read(outs["fsid"], outs).outs
    assert read["mons"] == ["node1", "node2"] and "node3" not in read["mdss"]
    assert provider.diff(outs["fsid"], read, props(world)).changes
    provider.update(outs["fsid"], read, props(world))
    assert world.quorum() == NAMES and world.running("mds") == NAMES
    assert world.mkfs["node3"] == 1


def test_removing_a_mon_and_an_mds_is_an_in_place_update(world):
    provider = CephClusterProvider()
    outs = provider.create(props(world)).outs
    new = props(world, mons=["node1", "node2"], mdss=["node1"])
    diff = provider.diff(outs["fsid"], outs, new)
    assert diff.changes and diff.replaces == []
    provider.update(outs["fsid"], outs, new)
    assert world.monmap == {"node1", "node2"} and world.running("mon") == ["node1", "node2"]
    assert world.running("mds") == ["node1"] and "mds.node3" not in world.auth


def test_delete_is_refused_without_allow_data_loss(world):
    outs = CephClusterProvider().create(props(world)).outs
    with pytest.raises(Exception, match="allow_data_loss"):
        CephClusterProvider().delete(outs["fsid"], outs)
    assert world.quorum() == NAMES


def test_delete_with_allow_data_loss_stops_everything_and_cleans(world):
    outs = CephClusterProvider().create(props(world, allow_data_loss=True)).outs
    CephClusterProvider().delete(outs["fsid"], outs)
    for node in world.nodes.values():
        assert node.running == set()
        assert not [p for p in node.files if p.startswith(("/etc/ceph/", "/var/lib/ceph/"))]


def test_health_timeout_reports_what_is_unhealthy(world):
    world.health_checks = {"MON_DISK_LOW": "mons node1 are low on available space"}
    with pytest.raises(TimeoutError, match="MON_DISK_LOW: mons node1 are low"):
        CephClusterProvider().create(props(world))


@pytest.mark.parametrize("change, replaces", [
    ({}, None),
    ({"mons": ["node1"]}, []),
    ({"mdss": ["node1", "node2"]}, []),
    ({"options": {"global": {"osd_pool_default_size": 2}}}, []),
    ({"public_network": "198.51.100.0/24"}, []),
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


def test_a_float_option_read_back_as_text_is_not_drift(world):
    provider = CephClusterProvider()
    p = props(world, options={"global": {"mds_beacon_grace": 6}})
    outs = provider.create(p).outs
    world.config["global"]["mds_beacon_grace"] = "6.000000"
    read = provider.read(outs["fsid"], outs).outs
    assert read["options"] == {"global": {"mds_beacon_grace": 6}}
    assert not provider.diff(outs["fsid"], read, p).changes
