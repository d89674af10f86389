"""CephMgr and CephMds against the fake cluster: what runs, what the cluster lists."""

import pytest

from providers.ceph_config import CephConfigProvider
from providers.ceph_mds import CephMdsProvider
from providers.ceph_mgr import CephMgrProvider
from providers.transport import Pool
from tests.unit.ceph_fakes import config_props, daemon_props
from tests.unit.fakes import Crash

pytestmark = pytest.mark.unit
NAMES = ["node1", "node2", "node3"]
KINDS = [("mgr", CephMgrProvider), ("mds", CephMdsProvider)]


@pytest.fixture(autouse=True)
def config(world, mons_up):
    """The cluster's mons in quorum and its options set: where a mgr or MDS starts."""
    CephConfigProvider().create(config_props(world, world.fsid))
    world.log.clear()


@pytest.mark.parametrize("kind, provider", KINDS)
def test_create_gives_each_daemon_its_key_and_starts_it(world, kind, provider):
    for name in NAMES:
        assert provider().create(daemon_props(world, world.fsid, name)).outs["ensure"] == "up"
    assert world.running(kind) == NAMES
    assert {f"{kind}.{n}" for n in NAMES} <= set(world.auth)
    keyring = world.nodes["node2"].files[f"/var/lib/ceph/{kind}/ceph-node2/keyring"]
    assert f"[{kind}.node2]" in keyring


@pytest.mark.parametrize("kind, provider", KINDS)
def test_the_keys_caps_are_the_daemons_profile(world, kind, provider):
    provider().create(daemon_props(world, world.fsid, "node1"))
    line = next(line for line in world.log.lines if "get-or-create" in line)
    assert {"mgr": "'allow profile mgr'", "mds": "'profile mds'"}[kind] in line


@pytest.mark.parametrize("kind, provider", KINDS)
def test_second_run_changes_nothing(world, kind, provider):
    provider().create(daemon_props(world, world.fsid, "node1"))
    world.log.clear()
    provider().create(daemon_props(world, world.fsid, "node1"))
    assert world.changes == []


@pytest.mark.parametrize("kind, provider", KINDS)
def test_a_keyring_another_cluster_left_is_written_again_not_adopted(world, kind, provider):
    """A daemon started with a leftover key fails cephx ("handle_auth_bad_method")."""
    path = f"/var/lib/ceph/{kind}/ceph-node1/keyring"
    world.nodes["node1"].files[path] = f"[{kind}.node1]\n\tkey = AQBleftoverkey==\n"
    provider().create(daemon_props(world, world.fsid, "node1"))
    assert "leftover" not in world.nodes["node1"].files[path]
    assert world.auth[f"{kind}.node1"]["key"] in world.nodes["node1"].files[path]


@pytest.mark.parametrize("kind, provider", KINDS)
@pytest.mark.parametrize("step", range(1, 5))  # 4 changes for one daemon
def test_crash_at_step_n_then_rerun_starts_it_once(world, kind, provider, step):
    world.log.crash_at = step
    with pytest.raises(Crash):
        provider().create(daemon_props(world, world.fsid, "node1"))
    provider().create(daemon_props(world, world.fsid, "node1"))
    assert world.running(kind) == ["node1"] and world.starts[f"{kind}.node1"] == 1


@pytest.mark.parametrize("kind, provider", KINDS)
def test_a_killed_daemon_shows_as_drift_and_update_restarts_it(world, kind, provider):
    p = daemon_props(world, world.fsid, "node2")
    outs = provider().create(p).outs
    world.nodes["node2"].running.discard((kind, "node2"))
    read = provider().read("node2", outs).outs
    assert read["ensure"] == "down" and provider().diff("node2", read, p).changes
    provider().update("node2", read, p)
    assert world.running(kind) == ["node2"]
    assert provider().read("node2", outs).outs["ensure"] == "up"


@pytest.mark.parametrize("kind, provider", KINDS)
def test_delete_stops_it_and_removes_its_key_without_opt_in(world, kind, provider):
    for name in NAMES:
        provider().create(daemon_props(world, world.fsid, name))
    provider().delete("node3", daemon_props(world, world.fsid, "node3"))
    assert world.running(kind) == ["node1", "node2"] and f"{kind}.node3" not in world.auth
    assert not [p for p in world.nodes["node3"].files if p.startswith(f"/var/lib/ceph/{kind}/")]
    assert provider().read("node3", daemon_props(world, world.fsid, "node3")).id == ""
    provider().delete("node3", daemon_props(world, world.fsid, "node3"))  # again: fine


@pytest.mark.parametrize("kind, provider", KINDS)
def test_deleting_the_active_one_hands_its_work_over_first(world, kind, provider):
    """A node taken out of the stack: a standby takes over at once, not after the beacon
    grace (30 s without an active mgr, measured on the lab)."""
    world.pools["data"] = {"pool_id": 1, "size": 3, "min_size": 2}
    world.fs["fs"] = {"meta": "data", "data": ["data"], "max_mds": 1, "standby": 1}
    for name in NAMES:
        provider().create(daemon_props(world, world.fsid, name))
    assert world.preferred(kind)[0] == "node1"
    provider().delete("node1", daemon_props(world, world.fsid, "node1"))
    assert f"{kind} fail node1" in " ".join(world.changes)
    assert world.running(kind) == ["node2", "node3"] and f"{kind}.node1" not in world.auth


@pytest.mark.parametrize("kind, provider", KINDS)
def test_a_daemon_goes_when_the_cluster_no_longer_answers(world, kind, provider):
    """The cluster being taken down: no standby to hand over to, no key to drop."""
    provider().create(daemon_props(world, world.fsid, "node2"))
    for mon in world.running("mon"):
        world.nodes[mon].running.discard(("mon", mon))
    provider().delete("node2", daemon_props(world, world.fsid, "node2"))
    assert world.running(kind) == []


def test_the_last_mgr_goes_only_once_no_osd_is_left(world):
    """The OSDs do not depend on a mgr, so nothing else orders their removal first."""
    CephMgrProvider().create(daemon_props(world, world.fsid, "node1"))
    world.osds[0] = {"host": "node2", "up": True, "in": True}
    last = daemon_props(world, world.fsid, "node1", timeout=0)
    with pytest.raises(TimeoutError, match=r"before its last mgr, mgr\.node1\. OSDs left: osd\.0"):
        CephMgrProvider().delete("node1", last)
    assert world.running("mgr") == ["node1"] and "mgr.node1" in world.auth
    world.osds.clear()
    CephMgrProvider().delete("node1", last)
    assert world.running("mgr") == [] and "mgr.node1" not in world.auth


def test_the_last_mgr_waits_while_the_osds_keep_going(world, monkeypatch):
    """They are removed one at a time (each may drain): a fixed budget would run out."""
    from providers import base

    CephMgrProvider().create(daemon_props(world, world.fsid, "node1"))
    for i in range(4):
        world.osds[i] = {"host": "node2", "up": True, "in": True}
    clock = {"now": 0.0}

    def sleep(seconds):  # one OSD goes in each pause
        clock["now"] += seconds
        world.osds.popitem()

    monkeypatch.setattr(base.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(base.time, "sleep", sleep)
    # a budget of 5 s: the last OSD goes at 9.75 s
    CephMgrProvider().delete("node1", daemon_props(world, world.fsid, "node1", timeout=1))
    assert world.running("mgr") == [] and not world.osds and clock["now"] > 5


def test_a_mgr_goes_beside_the_osds_while_another_is_listed(world):
    for name in ("node1", "node2"):
        CephMgrProvider().create(daemon_props(world, world.fsid, name))
    world.osds[0] = {"host": "node2", "up": True, "in": True}
    CephMgrProvider().delete("node1", daemon_props(world, world.fsid, "node1", timeout=0))
    assert world.running("mgr") == ["node2"]


def test_a_mgr_still_listed_but_without_its_key_does_not_count(world):
    """A standby just removed stays in the mgr map until its beacon grace has passed."""
    for name in ("node1", "node2"):
        CephMgrProvider().create(daemon_props(world, world.fsid, name))
    world.osds[0] = {"host": "node2", "up": True, "in": True}
    del world.auth["mgr.node2"]
    with pytest.raises(TimeoutError, match="OSDs left: osd.0"):
        CephMgrProvider().delete("node1", daemon_props(world, world.fsid, "node1", timeout=0))
    assert world.running("mgr") == ["node1", "node2"]


def test_the_last_mgr_goes_without_a_hand_over_to_one_just_removed(world):
    """mgr.node2 is still listed (its beacon grace) but gone: failing node1 over to it
    would wait for a takeover that never comes."""
    for name in ("node1", "node2"):
        CephMgrProvider().create(daemon_props(world, world.fsid, name))
    world.nodes["node2"].running.discard(("mgr", "node2"))
    del world.auth["mgr.node2"]
    world.listed_mgrs = ["node2"]  # the mgr map's standbys still name it
    CephMgrProvider().delete("node1", daemon_props(world, world.fsid, "node1", timeout=0))
    assert world.running("mgr") == [] and "mgr fail" not in " ".join(world.changes)


def test_the_active_mgr_goes_when_its_standbys_are_removed_during_its_hand_over(world):
    """A destroy deletes every mgr at once: the standbys it failed over to are gone before
    they take over (the lab: the wait ran out after 120 s)."""
    for name in NAMES:
        CephMgrProvider().create(daemon_props(world, world.fsid, name))

    def standbys_removed():
        for name in ("node2", "node3"):
            world.nodes[name].running.discard(("mgr", name))
            del world.auth[f"mgr.{name}"]
        world.listed_mgrs = ["node2", "node3"]

    world.on_fail = standbys_removed
    CephMgrProvider().delete("node1", daemon_props(world, world.fsid, "node1", timeout=5))
    assert world.running("mgr") == [] and "mgr.node1" not in world.auth


def test_a_mgr_handing_over_is_stopped_before_it_is_failed(world):
    """Failed while it runs, a mgr respawns as a standby, and the mons may make it active
    again (the lab: a destroy waited 120 s for a takeover that never came). Here the mons
    pick it again whenever it still runs when it is failed; stopped first, it cannot be."""
    for name in NAMES:
        CephMgrProvider().create(daemon_props(world, world.fsid, name))

    def picked_again():
        if "node1" in world.running("mgr"):
            world.failed = []

    world.on_fail = picked_again
    CephMgrProvider().delete("node1", daemon_props(world, world.fsid, "node1", timeout=1))
    assert world.preferred("mgr")[0] == "node2" and "mgr.node1" not in world.auth


@pytest.mark.parametrize("kind, provider", KINDS)
def test_systemd_nodes_use_the_ceph_unit(world, kind, provider):
    world.nodes["node3"].systemd = True
    world.nodes["node3"].pool = Pool()  # a new provider process: facts asked again
    provider().create(daemon_props(world, world.fsid, "node3"))
    lines = world.log.lines
    assert f"systemctl enable --now ceph-{kind}@node3" in lines
    assert world.running(kind) == ["node3"]


def test_direct_daemons_are_started_with_their_pid_file_binary(world):
    CephMgrProvider().create(daemon_props(world, world.fsid, "node1"))
    assert (
        "/usr/bin/ceph-mgr --cluster ceph -i node1 --setuser ceph --setgroup ceph"
        in world.log.lines
    )
    assert world.nodes["node1"].files["/run/ceph/ceph-mgr.node1.pid"]


def test_a_daemon_waits_for_a_quorum_and_says_so(world):
    for name in ("node1", "node2"):
        world.nodes[name].running.discard(("mon", name))
    with pytest.raises(TimeoutError, match="a mon quorum"):
        CephMdsProvider().create(daemon_props(world, world.fsid, "node1"))
    assert world.running("mds") == []


@pytest.mark.parametrize(
    "change, replaces",
    [
        ({}, None),
        ({"ensure": "down"}, []),
        ({"timeout": 60}, []),
        ({"node": "node2"}, ["node"]),
    ],
)
def test_diff_table(world, change, replaces):
    p = daemon_props(world, "f", "node1")
    for provider in (CephMgrProvider, CephMdsProvider):
        result = provider().diff("node1", {**p, "ensure": "up"}, {**p, **change})
        assert result.changes == (replaces is not None)
        assert result.replaces == (replaces or [])
