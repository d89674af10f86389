"""Node maintenance: the config's placement and refusals, the Maintenance gate against the
fake cluster, and each Ceph daemon stopping for maintenance and coming back."""

import threading

import pytest

from components.config import load
from providers import ceph_cli, ceph_osd
from providers.ceph_mds import CephMdsProvider
from providers.ceph_mgr import CephMgrProvider
from providers.ceph_mon import CephMonProvider
from providers.ceph_osd import CephOsdProvider
from providers.errors import Failure
from providers.transport import Pool
from providers.maintenance import MaintenanceProvider
from tests.unit.ceph_fakes import CephWorld, bring_up, daemon_props, mon_props
from tests.unit.fakes import Crash
from tests.unit.test_config import ROOT, node, problems

pytestmark = pytest.mark.unit
NAMES = ["node1", "node2", "node3"]


# --- the config --------------------------------------------------------------------------


def raw(**kw):
    nodes = [
        node(name=n, address=f"10.0.0.{i + 1}", disks=["/dev/vdb"]) for i, n in enumerate(NAMES)
    ]
    vms = [
        {"name": "vm-a", "node": "node1", "template": "/t.img", "memory_mib": 1024},
        {"name": "vm-b", "node": "node1", "template": "/t.img", "memory_mib": 512},
        {"name": "vm-c", "node": "node2", "template": "/t.img", "memory_mib": 2048},
    ]
    return {
        "nodes": nodes,
        "ceph": {"public_network": "10.0.0.0/24"},
        "pools": [{"name": "meta", "size": 3}, {"name": "data", "size": 3}],
        "filesystems": [{"name": "fs", "metadata_pool": "meta", "data_pool": "data"}],
        "mounts": [{"filesystem": "fs", "mountpoint": "/mnt/cephfs"}],
        "vms": vms,
        **kw,
    }


def test_a_vm_whose_disk_is_not_on_shared_storage_is_refused_at_preview():
    """Only known from the config at preview: found at the move, the node's daemons would
    already have stopped."""
    found = "\n".join(problems(raw(maintenance=["node1"], mounts=[])))
    assert "cephkvm:vms[0].node: node1 is in maintenance, but VM vm-a's disk" in found, found
    assert "cephkvm:vm_storage_shared" in found
    load(raw(maintenance=["node1"], mounts=[], vm_storage_shared=True), ROOT)


def test_no_node_in_maintenance_places_every_vm_at_home():
    m = load(raw(), ROOT).maintenance
    assert m.nodes == () and m.placement == {"vm-a": "node1", "vm-b": "node1", "vm-c": "node2"}


def test_vms_of_a_node_in_maintenance_fill_the_emptiest_node_first():
    m = load(raw(maintenance=["node1"]), ROOT).maintenance
    # node3 holds nothing, node2 holds vm-c (2048): vm-a goes to node3, then vm-b too
    # (1024 on node3 is still less than 2048 on node2)
    assert m.nodes == ("node1",)
    assert m.placement == {"vm-a": "node3", "vm-b": "node3", "vm-c": "node2"}


def test_the_same_config_always_gives_the_same_placement():
    assert (
        len(
            {
                tuple(load(raw(maintenance=["node1"]), ROOT).maintenance.placement.items())
                for _ in range(5)
            }
        )
        == 1
    )


def test_a_fallback_node_wins_and_a_node_can_say_maintenance_itself():
    config = raw()
    config["nodes"][0]["maintenance"] = True
    config["vms"][0]["fallback_node"] = "node2"
    m = load(config, ROOT).maintenance
    assert m.nodes == ("node1",) and m.placement["vm-a"] == "node2"


def test_two_of_three_mon_nodes_are_refused_at_preview():
    found = "\n".join(problems(raw(maintenance=["node1", "node2"])))
    assert "cephkvm:maintenance: node1, node2 would stop 2 of the 3 mons; a quorum needs 2" in found
    assert "pool meta 1 failure domain(s) with OSDs but it needs 2 (min_size)" in found


def test_an_unknown_node_and_a_vm_with_nowhere_to_go_are_named():
    config = raw(maintenance=["node9"])
    config["nodes"] = config["nodes"][:1]
    config["ceph"] = {"public_network": "10.0.0.0/24"}
    config.pop("pools"), config.pop("filesystems")
    config["vms"] = config["vms"][:1]
    config["maintenance"] = ["node1", "node9"]
    found = "\n".join(problems(config))
    assert "cephkvm:maintenance[1]: no node named 'node9'" in found
    assert (
        "cephkvm:vms[0].node: node1 is in maintenance and no other KVM node can run VM "
        "vm-a" in found
    )


def test_a_fallback_node_must_be_another_kvm_node():
    config = raw()
    config["vms"][0]["fallback_node"] = "node1"
    assert any(
        p.startswith("cephkvm:vms[0].fallback_node: 'node1' must be another node with the kvm role")
        for p in problems(config)
    )


# --- the gate ----------------------------------------------------------------------------


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setattr(ceph_osd, "DRAIN_POLL", 0.01)
    w = CephWorld().serve(monkeypatch)
    w.fsid = bring_up(w)["fsid"]
    w.pools["data"] = {"pool_id": 1, "size": 3, "min_size": 2}
    w.fs["fs"] = {"meta": "data", "data": ["data"], "max_mds": 1, "standby": 1}
    for name in NAMES:
        w.nodes[name].devices["/dev/sdb"] = {"signature": None, "osd": None}
        w.osd_outs = getattr(w, "osd_outs", {})
        w.osd_outs[name] = CephOsdProvider().create(osd_props(w, name)).outs
    w.log.clear()
    return w


def access(name):
    return {"connection": {"name": name, "address": "192.0.2.1", "host_key": "ssh-ed25519 A"}}


def gate_props(nodes, moves=(), **kw):
    props = {
        "admin": [access(n) for n in NAMES],
        "nodes": [{"name": n, "mon": True, "mgr": True, "mds": True, "osd": True} for n in nodes],
        "moves": list(moves),
        "targets": [access(t) for t in {m["to"] for m in moves}],
        **kw,
    }
    result = MaintenanceProvider().check({}, props)
    assert not result.failures, result.failures
    return result.inputs


def test_the_gate_lets_one_node_go_and_changes_nothing(world):
    MaintenanceProvider().create(
        gate_props(["node1"], [{"vm": "a", "memory_mib": 512, "to": "node2"}])
    )
    assert world.changes == []


def test_the_gate_refuses_what_ceph_says_is_not_ok_to_stop(world):
    world.nodes["node3"].running.discard(("mon", "node3"))  # already down by itself
    with pytest.raises(Failure) as err:
        MaintenanceProvider().create(gate_props(["node1"]))
    text = str(err.value)
    assert text.startswith(
        "refusing maintenance of node1: `ceph mon ok-to-stop node1` says: Error EBUSY"
    )
    assert "Nothing was stopped or moved" in text and world.changes == []


def test_the_gate_refuses_osds_whose_pgs_would_go_inactive(world):
    world.nodes["node3"].running.discard(("osd", "2"))
    with pytest.raises(Failure, match=r"`ceph osd ok-to-stop 0` says: Error EBUSY"):
        MaintenanceProvider().create(gate_props(["node1"]))


def test_the_gate_refuses_when_no_mds_or_mgr_is_left_elsewhere(world):
    for name in ("node2", "node3"):
        world.nodes[name].running -= {("mds", name), ("mgr", name)}
    with pytest.raises(Failure) as err:
        MaintenanceProvider().create(gate_props(["node1"]))
    assert "no mgr would be left running" in str(err.value)
    assert "0 MDS would be left for 1 active rank(s)" in str(err.value)


def test_the_gate_refuses_a_target_without_room_and_counts_vms_already_there(world):
    world.nodes["node2"].mem_available_kib = 600 * 1024
    moves = [
        {"vm": "a", "memory_mib": 512, "to": "node2"},
        {"vm": "b", "memory_mib": 512, "to": "node2"},
    ]
    with pytest.raises(Failure, match="node2 has 600 MiB available but a, b need 1024 MiB"):
        MaintenanceProvider().create(gate_props(["node1"], moves))
    world.nodes["node2"].domains.add("a")  # a re-run after a killed up: a moved already
    MaintenanceProvider().create(gate_props(["node1"], moves))


def test_a_kvm_only_node_asks_ceph_nothing(world):
    """No daemon of it stops: a cluster without quorum must not hold its VMs back."""
    for name in NAMES:
        world.nodes[name].running.clear()
    props = gate_props(["node1"], [{"vm": "a", "memory_mib": 512, "to": "node2"}])
    props["nodes"] = [{"name": "node1", "mon": False, "mgr": False, "mds": False, "osd": False}]
    MaintenanceProvider().create(props)
    assert not [line for line in world.log.lines if line.startswith("ceph ")]


def test_an_osd_node_whose_name_is_no_crush_host_is_refused(world):
    """Else its OSDs would be asked nothing (`ok-to-stop` of none) and stop anyway."""
    props = gate_props(["node1"])
    # the stack calls it osd-a; its hostname (CRUSH's host) is node1
    props["nodes"] = [{"name": "osd-a", "mon": False, "mgr": False, "mds": False, "osd": True}]
    with pytest.raises(Failure, match="osd-a has the osd role but `ceph osd tree` has no host"):
        MaintenanceProvider().create(props)


def test_leaving_maintenance_needs_no_check(world):
    olds = gate_props(["node1", "node2"])
    for name in ("node2", "node3"):  # no quorum: any check would fail
        world.nodes[name].running.clear()
    MaintenanceProvider().update("maintenance", olds, gate_props(["node1"]))
    assert list(world.log) == [], "leaving asks the cluster nothing"


# --- the daemons ----------------------------------------------------------------------------


def osd_props(world, name, **kw):
    result = CephOsdProvider().check(
        {},
        {
            "fsid": world.fsid,
            "node": name,
            "connection": access(name)["connection"],
            "device": "/dev/sdb",
            "timeout": 2,
            **kw,
        },
    )
    assert not result.failures, result.failures
    return result.inputs


def cycle(provider, olds, maintained):
    """Into maintenance and out again: (outputs in maintenance, outputs back)."""
    down = provider.update("x", olds, {**olds, "ensure": "maintenance"}).outs
    assert down["ensure"] == "maintenance"
    assert provider.read("x", down).outs["ensure"] == "maintenance"
    maintained()
    back = provider.update("x", down, {**down, "ensure": "up"}).outs
    assert back["ensure"] == "up" and provider.read("x", back).outs["ensure"] == "up"
    return down, back


def test_a_mon_stops_for_maintenance_and_the_quorum_stands_without_it(world):
    props = mon_props(world, world.fsid, "node1")

    def stopped():
        assert ("mon", "node1") not in world.nodes["node1"].running
        assert world.quorum() == ["node2", "node3"]

    cycle(CephMonProvider(), props, stopped)
    assert world.quorum() == NAMES


def test_the_active_mgr_hands_over_before_it_stops(world):
    assert world.preferred("mgr")[0] == "node1"
    props = daemon_props(world, world.fsid, "node1")

    def stopped():
        assert "mgr fail node1" in " ".join(world.changes)
        assert "node1" not in world.running("mgr") and world.preferred("mgr")[0] != "node1"

    cycle(CephMgrProvider(), props, stopped)


def test_the_active_mds_stops_then_is_failed_so_a_standby_takes_its_rank(world):
    """Failed while it runs, it would respawn as a standby the mons may pick again."""
    props = daemon_props(world, world.fsid, "node1")

    def stopped():
        lines = list(world.changes)
        fail = next(i for i, line in enumerate(lines) if "mds fail node1" in line)
        stop = next(i for i, line in enumerate(lines) if "ceph-mds.node1.pid" in line)
        assert stop < fail
        assert "node1" not in world.running("mds") and world.preferred("mds")[0] != "node1"

    cycle(CephMdsProvider(), props, stopped)


def test_an_osd_gets_its_own_noout_stops_and_comes_back_clean(world):
    olds = world.osd_outs["node1"]

    def stopped():
        assert world.noout == {0} and ("osd", "0") not in world.nodes["node1"].running
        assert world.osds[0]["in"]  # noout: it stays in, its PGs wait for it

    world.unclean_probes = 2  # recovery after it is back: up waits for clean PGs
    cycle(CephOsdProvider(), olds, stopped)
    assert world.noout == set() and world.unclean_probes < 0


def test_under_systemd_an_osd_in_maintenance_stays_down_across_a_reboot(world):
    """ceph-volume's lvm trigger starts the OSD at boot even with its unit disabled."""
    world.nodes["node1"].systemd = True
    world.nodes["node1"].pool = Pool()  # the init system is a fact asked once per process
    olds = world.osd_outs["node1"]

    def stopped():
        assert "ceph-osd@0" in world.nodes["node1"].masked

    cycle(CephOsdProvider(), olds, stopped)
    assert world.nodes["node1"].masked == set()
    assert ("osd", "0") in world.nodes["node1"].running


def test_a_daemon_started_by_hand_in_maintenance_is_drift_and_stopped_again(world):
    props = mon_props(world, world.fsid, "node1")
    down = CephMonProvider().update("x", props, {**props, "ensure": "maintenance"}).outs
    world.nodes["node1"].running.add(("mon", "node1"))
    assert CephMonProvider().read("x", down).outs["ensure"] == "up"  # differs: up stops it


@pytest.mark.parametrize("step", range(1, 3))  # noout, stop
def test_an_osd_killed_while_entering_maintenance_converges_on_rerun(world, step):
    olds = world.osd_outs["node1"]
    world.log.crash_at = len(world.changes) + step
    with pytest.raises(Crash):
        CephOsdProvider().update("x", olds, {**olds, "ensure": "maintenance"})
    CephOsdProvider().update("x", olds, {**olds, "ensure": "maintenance"})
    assert world.noout == {0} and ("osd", "0") not in world.nodes["node1"].running


def test_an_osd_left_with_its_noout_by_a_killed_run_is_drift_and_up_lifts_it(world):
    """Killed after noout (entering, or leaving before rm-noout): the state still says up,
    so only the node can tell; refresh shows it half in maintenance, up finishes leaving."""
    olds = world.osd_outs["node1"]
    world.log.crash_at = len(world.changes) + 2  # after add-noout, before the stop
    with pytest.raises(Crash):
        CephOsdProvider().update("x", olds, {**olds, "ensure": "maintenance"})
    found = CephOsdProvider().read("x", olds).outs
    assert found["ensure"] == "noout" and world.noout == {0}
    world.unclean_probes = 1
    CephOsdProvider().update("x", found, {**found, "ensure": "up"})  # given up on
    assert world.noout == set() and ("osd", "0") in world.nodes["node1"].running
    assert world.unclean_probes < 0, "up waited for clean PGs"
    assert CephOsdProvider().read("x", olds).outs["ensure"] == "up"


def test_an_osd_killed_after_its_noout_goes_on_into_maintenance_when_still_asked(world):
    olds = world.osd_outs["node1"]
    world.log.crash_at = len(world.changes) + 2  # after add-noout, before the stop
    with pytest.raises(Crash):
        CephOsdProvider().update("x", olds, {**olds, "ensure": "maintenance"})
    found = CephOsdProvider().read("x", olds).outs
    wanted = {**found, "ensure": "maintenance"}
    assert CephOsdProvider().diff("x", found, wanted).changes, "not taken as done"
    CephOsdProvider().update("x", found, wanted)
    assert world.noout == {0} and ("osd", "0") not in world.nodes["node1"].running


def test_an_osd_killed_leaving_before_its_noout_went_is_finished_by_one_refresh(world):
    olds = world.osd_outs["node1"]
    down = CephOsdProvider().update("x", olds, {**olds, "ensure": "maintenance"}).outs
    world.log.crash_at = len(world.changes) + 2  # started again, noout not lifted yet
    with pytest.raises(Crash):
        CephOsdProvider().update("x", down, {**down, "ensure": "up"})
    found = CephOsdProvider().read("x", down).outs
    assert found["ensure"] == "noout"
    CephOsdProvider().update("x", found, {**found, "ensure": "up"})
    assert world.noout == set() and ("osd", "0") in world.nodes["node1"].running


def test_a_mon_back_from_maintenance_waits_until_it_is_in_the_quorum(world, monkeypatch):
    props = mon_props(world, world.fsid, "node1")
    down = CephMonProvider().update("x", props, {**props, "ensure": "maintenance"}).outs
    monkeypatch.setattr(world, "quorum", lambda: ["node2", "node3"])  # it does not rejoin
    with pytest.raises(Exception, match="mons node1 in quorum"):
        CephMonProvider().update("x", down, {**down, "ensure": "up"})


# --- rolling restarts ---------------------------------------------------------------------


def restarted(world, provider, olds, kind, ident, node="node1"):
    starts = world.starts.get(f"{kind}.{ident}", 0)
    outs = provider.update("x", olds, {**olds, "restart": "r1"}).outs
    assert world.starts[f"{kind}.{ident}"] == starts + 1, "stopped and started once"
    assert (kind, str(ident)) in world.nodes[node].running and outs["ensure"] == "up"
    return outs


def test_a_mon_restart_waits_until_ceph_says_ok_to_stop_and_for_its_quorum(world, monkeypatch):
    props = mon_props(world, world.fsid, "node1")
    world.nodes["node3"].running.discard(("mon", "node3"))  # the previous one not back yet
    with pytest.raises(Exception, match="mon node1 to be ok to stop"):
        CephMonProvider().update("x", props, {**props, "restart": "r1"})
    assert ("mon", "node1") in world.nodes["node1"].running, "not touched while unsafe"
    world.nodes["node3"].running.add(("mon", "node3"))
    restarted(world, CephMonProvider(), props, "mon", "node1")
    assert world.quorum() == NAMES


def test_an_osd_restart_sets_its_noout_and_waits_for_clean_pgs(world):
    world.unclean_probes = 2
    restarted(world, CephOsdProvider(), world.osd_outs["node1"], "osd", 0)
    assert world.noout == set() and world.unclean_probes < 0
    assert "osd add-noout osd.0" in " ".join(world.changes)


def test_the_active_mgr_hands_over_before_its_restart(world):
    restarted(world, CephMgrProvider(), daemon_props(world, world.fsid, "node1"), "mgr", "node1")
    assert world.preferred("mgr")[0] != "node1"


def test_a_restart_waits_while_another_daemon_restarts(world):
    """No dependency chains a kind's daemons (a bring-up makes them side by side): a restart
    holds the provider's lock from its stop until its daemon is back, so the next waits."""
    props = daemon_props(world, world.fsid, "node2")
    starts, done, failed = world.starts.get("mgr.node2", 0), threading.Event(), []

    def restart():
        try:
            CephMgrProvider().update("x", props, {**props, "restart": "r1"})
        except Exception as e:  # reported below, not lost in the thread
            failed.append(e)
        done.set()

    with ceph_cli._RESTARTS:  # another daemon's restart under way
        CephMgrProvider().update("x", props, {**props, "timeout": 99})  # no restart: no wait
        worker = threading.Thread(target=restart)
        worker.start()
        assert not done.wait(0.5), "restarted while another daemon was down"
        assert world.starts.get("mgr.node2", 0) == starts
    worker.join(30)
    assert done.is_set() and not failed, failed
    assert world.starts["mgr.node2"] == starts + 1


def test_the_same_restart_value_again_restarts_nothing(world):
    props = {**mon_props(world, world.fsid, "node1"), "restart": "r1"}
    starts = dict(world.starts)
    CephMonProvider().update(
        "x", props, {**props, "connection": {**props["connection"], "port": 2222}}
    )
    assert world.starts == starts


@pytest.mark.parametrize("kind", ["mgr", "mds"])
def test_the_only_mgr_or_mds_restarts_in_place(world, kind):
    """No standby to hand over to: failing it over would wait for one that never comes."""
    provider = CephMgrProvider() if kind == "mgr" else CephMdsProvider()
    for other in ("node2", "node3"):
        world.nodes[other].running.discard((kind, other))
    restarted(world, provider, daemon_props(world, world.fsid, "node1"), kind, "node1")
    assert f"{kind} fail" not in " ".join(world.changes)


def test_a_restart_that_timed_out_after_the_stop_does_not_bounce_the_daemon_again(world):
    """Stopped and started, then the wait for clean PGs timed out: the state keeps the old
    value, and the re-run waits again without stopping it a second time."""
    olds = world.osd_outs["node1"]
    world.unclean_probes = 10**6  # recovery never ends within the wait
    with pytest.raises(Exception, match="active\\+clean"):
        CephOsdProvider().update("x", olds, {**olds, "restart": "r1", "timeout": 1})
    starts = world.starts["osd.0"]
    world.unclean_probes = 0
    CephOsdProvider().update("x", olds, {**olds, "restart": "r1"})
    assert world.starts["osd.0"] == starts, "not restarted twice"


def test_a_restart_value_asked_again_later_restarts_again(world):
    props = mon_props(world, world.fsid, "node1")
    r1 = restarted(world, CephMonProvider(), props, "mon", "node1")
    unset = CephMonProvider().update("x", r1, {**r1, "restart": None}).outs
    restarted(world, CephMonProvider(), unset, "mon", "node1")
