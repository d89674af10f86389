import pytest

from providers.errors import Failure
from providers.ceph_cluster import CephClusterProvider, render_conf
from providers.ceph_conf import CephConfProvider
from tests.unit.ceph_fakes import bring_up, cluster_props, conf_props
from tests.unit.fakes import Crash

pytestmark = pytest.mark.unit
NAMES = ["node1", "node2", "node3"]
IDENTITY = (
    "/var/lib/ceph/cephkvm/ceph.fsid",
    "/var/lib/ceph/cephkvm/ceph.bootstrap.keyring",
    "/var/lib/ceph/cephkvm/ceph.monmap",
)


def props(world, **kw):
    return cluster_props(world, **kw)


def test_create_writes_identity_on_the_mons_and_starts_no_daemon(world):
    outs = CephClusterProvider().create(props(world)).outs
    fsid = outs["fsid"]
    monmaps = {n.files["/var/lib/ceph/cephkvm/ceph.monmap"] for n in world.nodes.values()}
    assert monmaps == {"MONMAP node1 node2 node3"}, "one initial monmap, the same bytes"
    for node in world.nodes.values():
        assert node.files["/var/lib/ceph/cephkvm/ceph.fsid"] == fsid + "\n"
        assert node.files["/var/lib/ceph/cephkvm/ceph.owner"] == "cephkvm/unit\n"
        assert node.modes["/var/lib/ceph/cephkvm/ceph.bootstrap.keyring"] == ("600", "ceph:ceph")
        assert node.running == set()
    assert f"fsid = {fsid}" in outs["conf"]
    assert "pid_file = /run/ceph/$cluster-$name.pid" in outs["conf"]
    assert outs["mon_addresses"][0] == "[v2:192.0.2.11:3300,v1:192.0.2.11:6789]"
    assert outs["mon_hosts"] == ["192.0.2.11:6789", "192.0.2.12:6789", "192.0.2.13:6789"]
    assert outs["mon_key"] and outs["bootstrap_osd_key"] and outs["admin_key"]


def test_conf_writes_ceph_conf_and_the_admin_keyring_only_where_asked(world):
    outs = CephClusterProvider().create(props(world)).outs
    CephConfProvider().create(conf_props(world, outs, "node1"))
    CephConfProvider().create(conf_props(world, outs, "node2", admin=False))
    node1, node2 = world.nodes["node1"], world.nodes["node2"]
    assert node1.files["/etc/ceph/ceph.conf"] == outs["conf"] == node2.files["/etc/ceph/ceph.conf"]
    assert outs["admin_key"] in node1.files["/etc/ceph/ceph.client.admin.keyring"]
    assert node1.modes["/etc/ceph/ceph.client.admin.keyring"] == ("600", "root:root")
    assert "/etc/ceph/ceph.client.admin.keyring" not in node2.files, "no Ceph role, no admin key"


def test_conf_drift_is_seen_and_written_back(world):
    outs = CephClusterProvider().create(props(world)).outs
    p = CephConfProvider().create(conf_props(world, outs, "node1")).outs
    world.nodes["node1"].files.pop("/etc/ceph/ceph.client.admin.keyring")
    read = CephConfProvider().read("node1", p).outs
    assert CephConfProvider().diff("node1", read, p).changes
    CephConfProvider().update("node1", read, p)
    assert outs["admin_key"] in world.nodes["node1"].files["/etc/ceph/ceph.client.admin.keyring"]
    world.log.clear()
    assert not CephConfProvider().diff("node1", CephConfProvider().read("node1", p).outs, p).changes


def test_a_node_taken_out_loses_conf_and_every_keyring(world):
    outs = CephClusterProvider().create(props(world)).outs
    p = CephConfProvider().create(conf_props(world, outs, "node3")).outs
    node3 = world.nodes["node3"]
    node3.files["/var/lib/ceph/bootstrap-osd/ceph.keyring"] = "[client.bootstrap-osd]\n"
    CephConfProvider().delete("node3", p)
    assert not [f for f in node3.files if f.startswith("/etc/ceph/") or "bootstrap-osd" in f]


def test_second_run_changes_nothing_and_keeps_the_fsid(world):
    first = CephClusterProvider().create(props(world)).outs
    world.log.clear()
    again = CephClusterProvider().create(props(world)).outs
    assert world.changes == []
    assert again["fsid"] == first["fsid"] and again["admin_key"] == first["admin_key"]


def test_the_admin_key_never_appears_in_a_command_line(world):
    outs = bring_up(world)
    assert not [line for line in world.log.lines if outs["admin_key"] in line]


@pytest.mark.parametrize("step", range(1, 16))  # 15 changes in all
def test_crash_at_step_n_then_rerun_converges_with_one_fsid(world, step):
    world.log.crash_at = step
    with pytest.raises(Crash):
        CephClusterProvider().create(props(world))
    fsids = {n.files.get("/var/lib/ceph/cephkvm/ceph.fsid") for n in world.nodes.values()} - {None}
    outs = CephClusterProvider().create(props(world)).outs
    assert fsids <= {outs["fsid"] + "\n"}, "the fsid of the first attempt was reused"
    monmaps = {n.files["/var/lib/ceph/cephkvm/ceph.monmap"] for n in world.nodes.values()}
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
    assert (
        outs["fsid"] == old["fsid"]
        and node3["/var/lib/ceph/cephkvm/ceph.fsid"] == old["fsid"] + "\n"
    )
    assert "/var/lib/ceph/cephkvm/ceph.monmap" not in node3
    assert "192.0.2.13:3300" in outs["conf"]
    assert outs["mon_key"] == old["mon_key"] and outs["admin_key"] == old["admin_key"]


def test_identity_files_deleted_on_every_mon_are_drift_written_back_from_state(world):
    provider = CephClusterProvider()
    outs = provider.create(props(world)).outs
    for node in world.nodes.values():
        for path in [p for p in node.files if p.startswith("/var/lib/ceph/cephkvm/")]:
            node.files.pop(path)
    read = provider.read(outs["fsid"], outs)
    assert read.id == outs["fsid"], "the cluster is not gone: its identity is in state"
    assert read.outs["mons"] == [] and provider.diff(read.id, read.outs, props(world)).changes
    new = provider.update(read.id, read.outs, props(world)).outs
    assert {k: new[k] for k in ("fsid", "mon_key", "admin_key", "bootstrap_osd_key")} == {
        k: outs[k] for k in ("fsid", "mon_key", "admin_key", "bootstrap_osd_key")
    }
    for node in world.nodes.values():
        assert node.files["/var/lib/ceph/cephkvm/ceph.fsid"] == outs["fsid"] + "\n"
        assert outs["mon_key"] in node.files["/var/lib/ceph/cephkvm/ceph.bootstrap.keyring"]


def test_an_unreadable_identity_file_is_an_error_not_a_deletion(world, monkeypatch):
    provider = CephClusterProvider()
    outs = provider.create(props(world)).outs
    world.nodes["node2"].unreadable = {"/var/lib/ceph/cephkvm/ceph.fsid"}
    with pytest.raises(Exception, match="node2: `cat -- /var/lib/ceph/cephkvm/ceph.fsid`"):
        provider.read(outs["fsid"], outs)


def test_a_mon_node_holding_another_cluster_is_refused_by_name(world):
    provider = CephClusterProvider()
    outs = provider.create(props(world)).outs
    world.nodes["node2"].files["/var/lib/ceph/cephkvm/ceph.fsid"] = "0b8a3e2c-other\n"
    with pytest.raises(Exception, match="node2 holds Ceph cluster 0b8a3e2c-other"):
        provider.read(outs["fsid"], outs)
    world.log.clear()
    stale = {**outs, "mons": [m for m in outs["mons"] if m != "node2"]}  # as a refresh finds it
    with pytest.raises(Exception, match="node2 holds Ceph cluster 0b8a3e2c-other"):
        provider.update(outs["fsid"], stale, props(world))
    assert world.nodes["node2"].files["/var/lib/ceph/cephkvm/ceph.fsid"] == "0b8a3e2c-other\n"


def test_create_refuses_what_another_stack_left_on_the_mons(world):
    CephClusterProvider().create(props(world, owner="other/prod"))
    world.log.clear()
    with pytest.raises(Exception, match="made by other/prod, not by this stack"):
        CephClusterProvider().create(props(world))
    assert world.changes == []


def test_create_refuses_a_node_that_talks_to_another_cluster_before_any_change(world):
    """A stack whose state was lost, pointed at running nodes: their ceph.conf and admin
    keyring must not be overwritten with a new cluster's."""
    other = "ceph.conf\n[global]\nfsid = 5d2b8a3c-0e4f-4a8e-9a43-2c1e5d5b7a10\n"
    world.nodes["node2"].files["/etc/ceph/ceph.conf"] = other
    with pytest.raises(Failure, match="node2: /etc/ceph/ceph.conf belongs to Ceph cluster 5d2b"):
        CephClusterProvider().create(props(world))
    assert world.changes == []


def test_pinning_a_running_cluster_whose_identity_files_are_gone_is_refused(world):
    """New keys for a cluster the nodes run would lock every node out of it."""
    fsid = "5d2b8a3c-0e4f-4a8e-9a43-2c1e5d5b7a10"
    for node in world.nodes.values():
        node.files["/etc/ceph/ceph.conf"] = f"[global]\nfsid = {fsid}\n"
    with pytest.raises(Failure, match=f"cannot take Ceph cluster {fsid} over"):
        CephClusterProvider().create(props(world, pin_fsid=fsid))
    assert world.changes == []


def test_pinning_the_fsid_takes_a_left_over_cluster_over(world):
    old = CephClusterProvider().create(props(world, owner="other/prod")).outs
    outs = CephClusterProvider().create(props(world, pin_fsid=old["fsid"])).outs
    assert outs["fsid"] == old["fsid"] and outs["mon_key"] == old["mon_key"]


def test_pinning_the_current_fsid_is_no_replace_and_another_one_is_refused(world):
    outs = CephClusterProvider().create(props(world)).outs
    same = props(world, pin_fsid=outs["fsid"])
    assert CephClusterProvider().diff(outs["fsid"], outs, same).replaces == []
    other = props(world, pin_fsid="0b8a3e2c-6f49-4a8e-9a43-2c1e5d5b7a10")
    world.log.clear()
    with pytest.raises(Failure, match=f"this stack's cluster is {outs['fsid']}"):
        CephClusterProvider().diff(outs["fsid"], outs, other)
    assert world.log.lines == [], "preview reaches no node"


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


@pytest.mark.parametrize(
    "change, replaces",
    [
        ({}, None),
        ({"mons": ["node1"]}, []),
        ({"public_network": "198.51.100.0/24"}, []),
        ({"allow_data_loss": True}, []),
        ({"cluster_name": "other"}, ["cluster_name"]),
        ({"pin_fsid": "f"}, []),
    ],
)
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


def test_taking_away_half_the_mons_at_once_is_refused_at_preview(world):
    old = {**props(world), "fsid": "f"}
    two_gone = CephClusterProvider().check(old, props(world, mons=["node1"])).failures
    assert [f.property for f in two_gone] == ["mons"] and "loses quorum" in two_gone[0].reason
    assert not CephClusterProvider().check(old, props(world, mons=["node1", "node2"])).failures
    assert (
        not CephClusterProvider()
        .check(old, {**props(world, mons=["node1"]), "allow_data_loss": True})
        .failures
    )
