import pytest

from providers import ceph_osd
from providers.ceph_osd import CephOsdProvider
from tests.unit.fakes import Crash

pytestmark = pytest.mark.unit
NAMES = ["node1", "node2", "node3"]


@pytest.fixture(autouse=True)
def empty_disks(world, ceph_up, monkeypatch):
    """Every node of a running cluster has an empty /dev/sdb."""
    monkeypatch.setattr(ceph_osd, "DRAIN_POLL", 0.01)
    for node in world.nodes.values():
        node.devices["/dev/sdb"] = {"signature": None, "osd": None}


def props(world, node="node1", **kw):
    result = CephOsdProvider().check(
        {},
        {
            "fsid": world.fsid,
            "node": node,
            "connection": {**world.props_nodes()[0]["connection"], "name": node},
            "device": "/dev/sdb",
            "timeout": 2,
            **kw,
        },
    )
    assert not result.failures, result.failures
    return result.inputs


def test_raw_create_prepares_activates_and_starts_under_its_host(world):
    outs = CephOsdProvider().create(props(world)).outs
    assert outs["host"] == "node1" and outs["osd_id"] == 0
    assert ("osd", "0") in world.nodes["node1"].running
    lines = world.log.lines
    assert "ceph-volume --cluster ceph raw prepare --bluestore --data /dev/sdb" in lines
    assert "ceph-volume --cluster ceph raw activate --device /dev/sdb --no-systemd" in lines
    assert "/usr/bin/ceph-osd --cluster ceph -i 0 --setuser ceph --setgroup ceph" in lines


def test_second_run_changes_nothing(world):
    CephOsdProvider().create(props(world))
    world.log.clear()
    CephOsdProvider().create(props(world))
    assert world.changes == []


@pytest.mark.parametrize("step", range(1, 5))  # key, prepare, activate, start
def test_crash_at_step_n_then_rerun_makes_exactly_one_osd(world, step):
    world.log.crash_at = step
    with pytest.raises(Crash):
        CephOsdProvider().create(props(world))
    CephOsdProvider().create(props(world))
    assert list(world.osds) == [0] and world.starts["osd.0"] == 1


def test_lvm_method_uses_ceph_volume_lvm_and_systemd(world):
    world.nodes["node2"].systemd = True
    outs = CephOsdProvider().create(props(world, node="node2", method="lvm")).outs
    lines = world.log.lines
    assert "ceph-volume --cluster ceph lvm create --bluestore --data /dev/sdb" in lines
    assert not [line for line in lines if "raw " in line]
    assert outs["host"] == "node2"


def test_a_device_with_data_is_refused_unless_wipe(world):
    world.nodes["node1"].devices["/dev/sdb"]["signature"] = "ext4"
    with pytest.raises(Exception, match="not empty.*ext4.*wipe_devices"):
        CephOsdProvider().create(props(world))
    assert world.changes == [] and world.osds == {}
    CephOsdProvider().create(props(world, wipe=True))
    assert list(world.osds) == [0]


@pytest.mark.parametrize("method", ["raw", "lvm"])
def test_a_device_ceph_volume_cannot_list_is_never_wiped(world, method):
    """A failing `ceph-volume list` is no answer: taken for an empty device, the wipe
    would run over whatever OSD is there."""
    world.nodes["node1"].devices["/dev/sdb"].update(signature="ceph_bluestore", list_fails=True)
    with pytest.raises(Exception, match="list /dev/sdb --format json` exited 1"):
        CephOsdProvider().create(props(world, wipe=True, method=method))
    assert not [ln for ln in world.log.lines if "wipefs -a" in ln or "dd if=/dev/zero" in ln]


@pytest.mark.parametrize("method", ["raw", "lvm"])
def test_a_device_with_a_mounted_partition_is_not_wiped_for_a_new_osd(world, method):
    world.nodes["node1"].devices["/dev/sdb"].update(signature="ext4", busy="mounted\n")
    with pytest.raises(Exception, match="mounted.*refusing to write"):
        CephOsdProvider().create(props(world, wipe=True, method=method))
    assert not [ln for ln in world.log.lines if "wipefs -a" in ln or "dd if=/dev/zero" in ln]


def test_an_old_osd_of_another_cluster_is_refused(world):
    world.nodes["node1"].devices["/dev/sdb"]["osd"] = {
        "osd_id": 7,
        "osd_uuid": "u",
        "ceph_fsid": "another-cluster",
    }
    with pytest.raises(Exception, match="OSD 7 of cluster another-cluster"):
        CephOsdProvider().create(props(world))


def test_a_missing_device_is_refused_by_name(world):
    with pytest.raises(Exception, match="node1:/dev/sdc is not a block device"):
        CephOsdProvider().create(props(world, device="/dev/sdc"))


def test_delete_is_refused_when_the_rest_cannot_hold_the_replicas(world):
    outs = [CephOsdProvider().create(props(world, node=n, allow_removal=True)).outs for n in NAMES]
    world.pools["data"] = {"pool_id": 1, "type": 1, "size": 3, "min_size": 2, "pg_num": 8}
    with pytest.raises(Exception, match="span 2 host.*data.*keep 3 copies"):
        CephOsdProvider().delete("node1:/dev/sdb", outs[0])
    assert 0 in world.osds and world.osds[0]["in"]


def removable(world, **kw):
    return [
        CephOsdProvider().create(props(world, node=n, allow_removal=True, **kw)).outs for n in NAMES
    ]


def test_delete_is_refused_without_the_opt_in_before_touching_anything(world):
    outs = [CephOsdProvider().create(props(world, node=n)).outs for n in NAMES]
    world.log.clear()
    with pytest.raises(Exception, match="allow_osd_removal: true"):
        CephOsdProvider().delete("node1:/dev/sdb", outs[0])
    assert world.log == [] and world.osds[0]["in"]


def test_delete_waits_until_every_pg_is_clean_before_the_purge(world):
    outs = removable(world)
    world.pools["data"] = {"pool_id": 1, "type": 1, "size": 2, "min_size": 1, "pg_num": 8}
    world.unclean_probes = 3
    CephOsdProvider().delete("node1:/dev/sdb", outs[0])
    lines = world.log.lines
    purge = next(i for i, ln in enumerate(lines) if "osd purge 0" in ln)
    dumps = [i for i, ln in enumerate(lines) if "pg dump pgs_brief" in ln]
    assert len([i for i in dumps if i < purge]) == 4, "three degraded answers, then clean"
    assert 0 not in world.osds


def test_a_dead_osd_that_cannot_drain_is_purged_only_with_allow_data_loss(world):
    outs = removable(world, timeout=0)
    world.pools["data"] = {"pool_id": 1, "type": 1, "size": 2, "min_size": 1, "pg_num": 8}
    world.nodes["node1"].running.discard(("osd", "0"))
    world.unclean_probes = 100
    with pytest.raises(TimeoutError, match=r"active\+clean elsewhere"):
        CephOsdProvider().delete("node1:/dev/sdb", outs[0])
    assert 0 in world.osds, "not purged"
    CephOsdProvider().delete("node1:/dev/sdb", {**outs[0], "allow_data_loss": True})
    assert 0 not in world.osds


def test_a_device_that_no_longer_holds_the_osd_is_not_zapped(world):
    outs = removable(world)
    world.pools["data"] = {"pool_id": 1, "type": 1, "size": 2, "min_size": 1, "pg_num": 8}
    dev = world.nodes["node1"].devices["/dev/sdb"]
    dev["osd"] = {**dev["osd"], "osd_uuid": "another-osd"}  # /dev/sdb is another disk now
    CephOsdProvider().delete("node1:/dev/sdb", outs[0])
    assert 0 not in world.osds
    assert not [ln for ln in world.log.lines if "dd if=/dev/zero" in ln]
    assert dev["osd"]["osd_uuid"] == "another-osd"


def test_a_device_with_a_mounted_partition_is_never_written(world):
    outs = removable(world)
    world.pools["data"] = {"pool_id": 1, "type": 1, "size": 2, "min_size": 1, "pg_num": 8}
    world.nodes["node1"].devices["/dev/sdb"]["busy"] = "mounted\n"
    with pytest.raises(Exception, match="mounted.*refusing to write"):
        CephOsdProvider().delete("node1:/dev/sdb", outs[0])
    assert not [ln for ln in world.log.lines if "dd if=/dev/zero" in ln]


def test_delete_drains_then_purges_and_zaps(world):
    outs = removable(world)
    world.pools["data"] = {"pool_id": 1, "type": 1, "size": 2, "min_size": 1, "pg_num": 8}
    CephOsdProvider().delete("node1:/dev/sdb", outs[0])
    lines = world.changes
    order = [
        next(i for i, ln in enumerate(lines) if w in ln)
        for w in ("osd crush reweight osd.0 0", "osd out 0", "osd purge 0", "dd if=/dev/zero")
    ]
    assert order == sorted(order)
    assert 0 not in world.osds and world.nodes["node1"].devices["/dev/sdb"]["osd"] is None
    key = "/var/lib/ceph/bootstrap-osd/ceph.keyring"
    assert key not in world.nodes["node1"].files, "no OSD left there: no key to make one"
    assert key in world.nodes["node2"].files


def test_the_drain_reads_pg_states_the_osds_have_just_reported(world):
    """Between two reports the mgr still has the states from before the reweight: all
    clean. Read like that, the OSD would be purged while its PGs are still moving."""
    outs = removable(world)
    world.pools["data"] = {"pool_id": 1, "type": 1, "size": 2, "min_size": 1, "pg_num": 8}
    world.stale_until_flush, world.unclean_probes = True, 2
    CephOsdProvider().delete("node1:/dev/sdb", outs[0])
    assert world.unclean_probes < 0, "the moving PGs were never seen"
    assert 0 not in world.osds


def test_read_reports_a_stopped_osd_as_drift(world):
    provider = CephOsdProvider()
    outs = provider.create(props(world)).outs
    world.nodes["node1"].running.discard(("osd", "0"))
    read = provider.read("node1:/dev/sdb", outs).outs
    assert read["ensure"] == "down"
    assert provider.diff("x", read, props(world)).changes
    provider.update("x", read, props(world))
    assert ("osd", "0") in world.nodes["node1"].running


@pytest.mark.parametrize(
    "change, replaces",
    [
        ({}, None),
        ({"wipe": True}, []),
        ({"device": "/dev/sdc"}, ["device"]),
        ({"node": "node2"}, ["node"]),
        ({"method": "lvm"}, ["method"]),
        ({"fsid": "x"}, ["fsid"]),
    ],
)
def test_diff_table(world, change, replaces):
    old = {**props(world), "osd_id": 0, "osd_uuid": "u", "host": "node1"}
    result = CephOsdProvider().diff("x", old, {**props(world), **change})
    assert result.changes == (replaces is not None)
    assert result.replaces == (replaces or [])
    assert result.delete_before_replace == bool(replaces)


def test_check_names_the_field():
    failures = {
        f.property: f.reason
        for f in CephOsdProvider()
        .check(
            {},
            {
                "node": "n",
                "connection": {"name": "n", "address": "a", "host_key": "k"},
                "device": "sdb",
                "method": "zfs",
            },
        )
        .failures
    }
    assert "absolute device path" in failures["device"] and "raw" in failures["method"]


def test_with_allow_data_loss_an_osd_without_room_to_drain_is_purged(world):
    """As when the whole cluster is destroyed: the last OSDs cannot drain anywhere."""
    outs = removable(world, allow_data_loss=True)
    world.pools["data"] = {"pool_id": 1, "type": 1, "size": 3, "min_size": 2, "pg_num": 8}
    world.unclean_probes = 100
    CephOsdProvider().delete("node1:/dev/sdb", outs[0])
    assert 0 not in world.osds
