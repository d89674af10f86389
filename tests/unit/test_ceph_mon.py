import pytest

from providers.ceph_cluster import CephClusterProvider, fsid_path
from providers.ceph_mon import CephMonProvider, removal_problem
from tests.unit.ceph_fakes import CephWorld, bring_up, cluster_props, mon_props
from tests.unit.fakes import Crash

pytestmark = pytest.mark.unit
NAMES = ["node1", "node2", "node3"]
MON_DIR = "/var/lib/ceph/mon/ceph-{}/done"


def cluster(world, **kw):
    return CephClusterProvider().create(cluster_props(world, **kw)).outs["fsid"]


def test_first_mons_are_made_one_by_one_without_waiting_for_a_quorum(world):
    fsid = cluster(world)
    quorums = []
    for name in NAMES:  # as the engine may run them: each returns on its own
        outs = CephMonProvider().create(mon_props(world, fsid, name)).outs
        quorums.append(world.quorum())
        assert outs["ensure"] == "up"
    assert quorums == [[], ["node1", "node2"], NAMES]
    assert world.mkfs == {n: 1 for n in NAMES}
    assert world.made_from == {n: set(NAMES) for n in NAMES}, "all from the initial monmap"
    assert outs["mon_addr"] == "[v2:192.0.2.13:3300,v1:192.0.2.13:6789]"


def test_second_run_changes_nothing(world):
    fsid = cluster(world)
    for name in NAMES:
        CephMonProvider().create(mon_props(world, fsid, name))
    world.log.clear()
    for name in NAMES:
        CephMonProvider().create(mon_props(world, fsid, name))
    assert world.changes == []


def _changes_of_a_bring_up() -> int:
    w = CephWorld()
    with pytest.MonkeyPatch.context() as mp:
        w.serve(mp)
        bring_up(w)
    return len(w.changes)


@pytest.mark.parametrize("step", range(1, _changes_of_a_bring_up() + 1))
def test_crash_at_step_n_of_a_bring_up_then_rerun_converges(world, step):
    world.log.crash_at = step
    with pytest.raises(Crash):
        bring_up(world)
    fsids = {n.files.get(fsid_path("ceph")) for n in world.nodes.values()} - {None}
    outs = bring_up(world)
    assert fsids <= {outs["fsid"] + "\n"}
    assert all(n.files.get(fsid_path("ceph")) == outs["fsid"] + "\n" for n in world.nodes.values())
    assert world.quorum() == NAMES
    assert world.running("mgr") == NAMES and world.running("mds") == NAMES
    assert all(count == 1 for count in world.mkfs.values()), "a mon was made twice"
    assert all(count == 1 for count in world.starts.values()), "a daemon was started twice"


def test_a_mon_added_later_joins_with_the_current_monmap(world):
    outs = bring_up(world, mons=["node1", "node2"])
    CephClusterProvider().update(outs["fsid"], outs, cluster_props(world, mons=NAMES))
    CephMonProvider().create(mon_props(world, outs["fsid"], "node3"))
    assert world.made_from["node3"] == {"node1", "node2"}, "made from `ceph mon getmap`"
    assert world.monmap == set(NAMES) and world.quorum() == NAMES


def test_only_the_first_mons_get_the_short_first_election_before_they_start(world):
    outs = bring_up(world, mons=["node1", "node2"])
    lines = world.log.lines
    for name in ("node1", "node2"):
        helper = next(i for i, line in enumerate(lines) if f"ceph-mon.{name}.asok" in line)
        start = lines.index(
            f"/usr/bin/ceph-mon --cluster ceph -i {name} --setuser ceph --setgroup ceph"
        )
        assert helper < start, "the helper waits for the mon's socket, not after it"
    CephClusterProvider().update(outs["fsid"], outs, cluster_props(world, mons=NAMES))
    CephMonProvider().create(mon_props(world, outs["fsid"], "node3"))  # joins: no helper
    CephMonProvider().create(mon_props(world, outs["fsid"], "node1"))  # again: no helper
    assert world.election_helpers == [
        "/var/run/ceph/ceph-mon.node1.asok",
        "/var/run/ceph/ceph-mon.node2.asok",
    ]


def test_a_later_mon_without_a_quorum_says_what_to_do(world):
    outs = bring_up(world, mons=["node1", "node2"])
    for name in ("node1", "node2"):
        world.nodes[name].running.discard(("mon", name))
    CephClusterProvider().update(outs["fsid"], outs, cluster_props(world, mons=NAMES))
    with pytest.raises(
        Exception,
        match=r"node3: mon.node3 is not one of the cluster's first "
        r"mons.*pulumi up --refresh",
    ):
        CephMonProvider().create(mon_props(world, outs["fsid"], "node3"))
    assert "node3" not in world.mkfs


def test_a_killed_mon_shows_as_drift_and_update_restarts_it(world):
    fsid = bring_up(world)["fsid"]
    provider, p = CephMonProvider(), mon_props(world, fsid, "node3")
    outs = {**p, "ensure": "up"}
    world.nodes["node3"].running.discard(("mon", "node3"))
    read = provider.read("node3", outs).outs
    assert read["ensure"] == "down"
    assert provider.diff("node3", read, p).changes
    provider.update("node3", read, p)
    assert world.quorum() == NAMES and world.mkfs["node3"] == 1


def test_a_wiped_mon_is_gone_on_read(world):
    fsid = bring_up(world)["fsid"]
    world.nodes["node2"].files = {
        p: v
        for p, v in world.nodes["node2"].files.items()
        if not p.startswith("/var/lib/ceph/mon/")
    }
    assert CephMonProvider().read("node2", mon_props(world, fsid, "node2")).id == ""


def test_delete_takes_the_mon_out_of_the_monmap_stops_it_and_removes_its_dir(world):
    fsid = bring_up(world)["fsid"]
    CephMonProvider().delete("node3", mon_props(world, fsid, "node3"))
    assert world.monmap == {"node1", "node2"} and world.quorum() == ["node1", "node2"]
    assert world.running("mon") == ["node1", "node2"]
    assert not [p for p in world.nodes["node3"].files if p.startswith("/var/lib/ceph/mon/")]
    CephMonProvider().delete("node3", mon_props(world, fsid, "node3"))  # again: nothing to do
    assert world.quorum() == ["node1", "node2"]


def test_a_removed_mon_added_again_joins_the_running_cluster(world):
    outs = bring_up(world)
    fsid = outs["fsid"]
    CephMonProvider().delete("node3", mon_props(world, fsid, "node3"))
    assert not [f for f in world.nodes["node3"].files if "/var/lib/ceph/cephkvm/" in f], (
        "a node that is no mon keeps no mon. key"
    )
    # Given back: the cluster (its mons changed) writes the identity again, then the mon.
    CephClusterProvider().update(fsid, {**outs, "mons": ["node1", "node2"]}, cluster_props(world))
    CephMonProvider().create(mon_props(world, fsid, "node3"))
    assert world.made_from["node3"] == {"node1", "node2"}
    assert world.quorum() == NAMES


def test_delete_refuses_to_lose_quorum_and_says_what_to_do(world):
    fsid = bring_up(world)["fsid"]
    world.nodes["node3"].running.discard(("mon", "node3"))
    with pytest.raises(
        Exception,
        match=r"refusing to remove mon.node1 on node1: only 1 of the "
        r"2 mons.*pulumi up --refresh",
    ):
        CephMonProvider().delete("node1", mon_props(world, fsid, "node1"))
    assert world.monmap == set(NAMES) and world.quorum() == ["node1", "node2"]


def test_the_last_mon_is_kept_unless_data_loss_is_allowed(world):
    fsid = bring_up(world, mons=["node1"])["fsid"]
    with pytest.raises(Exception, match=r"last mon.*allow_data_loss"):
        CephMonProvider().delete("node1", mon_props(world, fsid, "node1"))
    assert world.quorum() == ["node1"]
    CephMonProvider().delete("node1", mon_props(world, fsid, "node1", allow_data_loss=True))
    assert world.running("mon") == []


def test_destroy_removes_every_mon_one_after_the_other(world):
    fsid = bring_up(world)["fsid"]
    for name in NAMES:
        CephMonProvider().delete(name, mon_props(world, fsid, name, allow_data_loss=True))
    assert world.running("mon") == [] and world.monmap == {"node3"}
    assert not [
        p for n in world.nodes.values() for p in n.files if p.startswith("/var/lib/ceph/mon/")
    ]


@pytest.mark.parametrize(
    "rest, in_quorum, refused",
    [
        ([], [], "last mon"),
        (["b", "c"], ["b", "c"], None),
        (["b", "c"], ["b"], "loses quorum"),
        (["b"], ["b"], None),
        (["b", "c", "d", "e"], ["b", "c"], "loses quorum"),
        (["b", "c", "d", "e"], ["b", "c", "d"], None),
    ],
)
def test_removal_problem(rest, in_quorum, refused):
    problem = removal_problem("a", rest, in_quorum)
    assert (problem is None) if refused is None else (refused in problem)


def test_systemd_nodes_use_the_mon_unit(world):
    for node in world.nodes.values():
        node.systemd = True
    fsid = cluster(world)
    for name in NAMES:
        CephMonProvider().create(mon_props(world, fsid, name))
    lines = world.log.lines
    assert "systemctl enable --now ceph-mon@node1" in lines
    assert not [line for line in lines if line.startswith("/usr/bin/ceph-")]
    assert world.quorum() == NAMES


@pytest.mark.parametrize(
    "change, replaces",
    [
        ({}, None),
        ({"ensure": "down"}, []),
        ({"allow_data_loss": True}, []),
        ({"address": "192.0.2.99"}, ["address"]),
        ({"fsid": "other"}, ["fsid"]),
    ],
)
def test_diff_table(world, change, replaces):
    p = mon_props(world, "f", "node1")
    result = CephMonProvider().diff("node1", {**p, "mon_addr": "x"}, {**p, **change})
    assert result.changes == (replaces is not None)
    assert result.replaces == (replaces or [])


def test_a_mon_store_of_another_cluster_is_refused_not_adopted(world):
    outs = CephClusterProvider().create(cluster_props(world)).outs
    node1 = world.nodes["node1"]
    node1.files["/var/lib/ceph/mon/ceph-node1/keyring"] = "[mon.]\n"  # left by another cluster
    node1.dirs.add("/var/lib/ceph/mon/ceph-node1")
    world.log.clear()
    with pytest.raises(Exception, match="not this cluster.s.*remove /var/lib/ceph/mon/ceph-node1"):
        CephMonProvider().create(mon_props(world, outs["fsid"], "node1"))
    assert world.changes == [] and world.running("mon") == []


def test_identity_files_deleted_do_not_make_the_mons_foreign(world):
    """The store's owner is kept in the store's own directory."""
    outs = bring_up(world)
    for node in world.nodes.values():
        for path in [p for p in node.files if p.startswith("/var/lib/ceph/cephkvm/")]:
            node.files.pop(path)
    for name in NAMES:
        read = CephMonProvider().read(name, mon_props(world, outs["fsid"], name))
        assert read.id == name and read.outs["ensure"] == "up"
