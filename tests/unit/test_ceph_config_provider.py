"""CephConfig against the fake cluster: options in the mons' store, quorum, health."""

import pytest

from providers.ceph_config import CephConfigProvider
from tests.unit.ceph_fakes import config_props
from tests.unit.fakes import Crash

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("mons_up")]
NAMES = ["node1", "node2", "node3"]
OPTIONS = {"mon": {"mon_data_avail_warn": 2}}


def props(world, **kw):
    return config_props(world, world.fsid, **{"options": OPTIONS, **kw})


def test_create_sets_the_options_and_reports_version_and_health(world):
    outs = CephConfigProvider().create(props(world)).outs
    assert world.config["mon"] == {
        "mon_data_avail_warn": "2",
        "auth_allow_insecure_global_id_reclaim": "false",
    }
    assert outs["options"] == OPTIONS
    assert outs["version"] == "16.2.15" and outs["health"] == "HEALTH_OK"


def test_second_run_changes_nothing(world):
    CephConfigProvider().create(props(world))
    world.log.clear()
    CephConfigProvider().create(props(world))
    assert world.changes == []


@pytest.mark.parametrize("step", range(1, 3))  # 2 changes in all
def test_crash_at_step_n_then_rerun_sets_each_option(world, step):
    world.log.crash_at = step
    with pytest.raises(Crash):
        CephConfigProvider().create(props(world))
    CephConfigProvider().create(props(world))
    assert world.config["mon"]["mon_data_avail_warn"] == "2"


def test_waits_for_every_listed_mon_in_quorum(world):
    world.nodes["node3"].running.discard(("mon", "node3"))
    with pytest.raises(
        TimeoutError,
        match=r"mons node1, node2, node3 in quorum.*"
        r"\['node1', 'node2'\]",
    ):
        CephConfigProvider().create(props(world))
    assert world.config == {}


def test_update_sets_changes_and_removes_dropped_options(world):
    provider = CephConfigProvider()
    old = provider.create(props(world, options={"global": {"a": 1, "b": "x"}})).outs
    new = props(world, options={"global": {"a": 2}})
    assert provider.diff(world.fsid, old, new).changes
    provider.update(world.fsid, old, new)
    assert world.config["global"] == {"a": "2"}


def test_a_hand_changed_option_is_drift(world):
    provider = CephConfigProvider()
    outs = provider.create(props(world)).outs
    world.config["mon"]["mon_data_avail_warn"] = "30"
    read = provider.read(world.fsid, outs).outs
    assert read["options"] == {"mon": {"mon_data_avail_warn": "30"}}
    assert provider.diff(world.fsid, read, props(world)).changes


def test_a_float_option_read_back_as_text_is_not_drift(world):
    provider = CephConfigProvider()
    p = props(world, options={"global": {"mds_beacon_grace": 6}})
    outs = provider.create(p).outs
    world.config["global"]["mds_beacon_grace"] = "6.000000"
    read = provider.read(world.fsid, outs).outs
    assert read["options"] == {"global": {"mds_beacon_grace": 6}}
    assert not provider.diff(world.fsid, read, p).changes


def test_health_timeout_reports_what_is_unhealthy(world):
    world.health_checks = {"MON_DISK_LOW": "mons node1 are low on available space"}
    with pytest.raises(TimeoutError, match="MON_DISK_LOW: mons node1 are low"):
        CephConfigProvider().create(props(world))


def test_checks_of_later_resources_do_not_hold_it_up(world):
    world.health_checks = {
        "TOO_FEW_OSDS": "OSD count 0 < osd_pool_default_size 3",
        "MGR_DOWN": "no active mgr",
    }
    outs = CephConfigProvider().create(props(world)).outs
    assert outs["health"] == "HEALTH_WARN" and "TOO_FEW_OSDS" in outs["health_checks"]


def test_delete_is_refused_without_opt_in_so_destroy_stops_before_the_mons(world):
    outs = CephConfigProvider().create(props(world)).outs
    with pytest.raises(Exception, match="allow_data_loss"):
        CephConfigProvider().delete(world.fsid, outs)
    assert world.config["mon"]["mon_data_avail_warn"] == "2"
    assert sorted(world.quorum()) == NAMES


def test_delete_with_opt_in_removes_its_options(world):
    outs = CephConfigProvider().create(props(world, allow_data_loss=True)).outs
    CephConfigProvider().delete(world.fsid, outs)
    assert "mon_data_avail_warn" not in world.config["mon"]


@pytest.mark.parametrize(
    "change, replaces",
    [
        ({}, None),
        ({"options": {"global": {"osd_pool_default_size": 2}}}, []),
        ({"mons": ["node1"]}, []),
        ({"fsid": "other"}, ["fsid"]),
    ],
)
def test_diff_table(world, change, replaces):
    old = {**props(world), "version": "16.2.15"}
    result = CephConfigProvider().diff(world.fsid, old, {**props(world), **change})
    assert result.changes == (replaces is not None)
    assert result.replaces == (replaces or [])


def test_check_names_the_field(world):
    failures = {
        f.property
        for f in CephConfigProvider()
        .check({}, {"fsid": "f", "admin": [], "options": {"global": 3}})
        .failures
    }
    assert failures == {"admin", "options.global"}
