"""CephDashboard against the fake cluster: the module, its options and certificate, the
administrator and its password (never on a command line), drift, removal."""

import pytest

from providers.ceph_dashboard import CephDashboardProvider
from providers.passwords import generate as new_password
from providers.ceph_mgr import CephMgrProvider
from tests.unit.ceph_fakes import config_props, daemon_props
from tests.unit.fakes import Crash

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("mons_up")]
ADDRESSES = {"node1": "192.0.2.11", "node2": "192.0.2.12"}


@pytest.fixture
def mgrs(world):
    for name in ADDRESSES:
        CephMgrProvider().create(daemon_props(world, world.fsid, name))
    world.log.clear()


def props(world, **kw):
    raw = config_props(world, world.fsid)
    inputs = {"fsid": world.fsid, "admin": raw["admin"], "mgrs": ADDRESSES, "timeout": 2, **kw}
    result = CephDashboardProvider().check({}, inputs)
    assert not result.failures, result.failures
    return result.inputs


def test_create_serves_https_on_each_mgr_address_with_a_generated_admin(world, mgrs):
    outs = CephDashboardProvider().create(props(world)).outs
    assert "dashboard" in world.modules and "restful" not in world.modules
    opts = world.config["mgr"]
    assert opts["mgr/dashboard/ssl"] == "true" and opts["mgr/dashboard/ssl_server_port"] == "8443"
    assert opts["mgr/dashboard/node2/server_addr"] == "192.0.2.12"
    assert "mgr/dashboard/crt" in world.config_keys
    assert world.dashboard_users == {"admin": outs["password"]}
    assert outs["url"] == "https://192.0.2.11:8443/"
    assert outs["urls"] == ["https://192.0.2.11:8443/", "https://192.0.2.12:8443/"]
    assert outs["restful_was_on"] is True
    assert not [line for line in world.log.lines if outs["password"] in line]


def test_generated_passwords_are_long_mixed_and_new_each_time():
    a, b = new_password(), new_password()
    assert a != b and len(a) == 24
    assert any(c.islower() for c in a) and any(c.isupper() for c in a)
    assert any(c.isdigit() for c in a)


def test_second_run_changes_nothing(world, mgrs):
    provider = CephDashboardProvider()
    outs = provider.create(props(world)).outs
    world.log.clear()
    provider.update(world.fsid, outs, props(world))
    assert world.changes == []


@pytest.mark.parametrize("step", range(1, 9))
def test_crash_at_step_n_then_rerun_converges(world, mgrs, step):
    world.log.crash_at = step
    with pytest.raises(Crash):
        CephDashboardProvider().create(props(world))
    outs = CephDashboardProvider().create(props(world)).outs
    assert world.dashboard_users == {"admin": outs["password"]}
    assert "dashboard" in world.modules


def test_read_reports_a_missing_admin_and_update_makes_it_again(world, mgrs):
    provider = CephDashboardProvider()
    outs = provider.create(props(world)).outs
    del world.dashboard_users["admin"]
    read = provider.read(world.fsid, outs).outs
    assert read["ensure"] == "down"
    assert provider.diff(world.fsid, read, props(world)).changes
    provider.update(world.fsid, read, props(world))
    assert world.dashboard_users == {"admin": outs["password"]}


def test_a_password_changed_by_hand_is_set_back(world, mgrs):
    provider = CephDashboardProvider()
    outs = provider.create(props(world)).outs
    world.dashboard_users["admin"] = "changed-by-hand"
    read = provider.read(world.fsid, outs).outs
    assert read["ensure"] == "down"
    provider.update(world.fsid, read, props(world))
    assert world.dashboard_users["admin"] == outs["password"]


def test_read_of_a_disabled_module_is_gone(world, mgrs):
    provider = CephDashboardProvider()
    outs = provider.create(props(world)).outs
    world.modules.discard("dashboard")
    assert provider.read(world.fsid, outs).id == ""


def test_delete_turns_it_off_and_restful_back_on(world, mgrs):
    provider = CephDashboardProvider()
    outs = provider.create(props(world)).outs
    provider.delete(world.fsid, outs)
    assert "dashboard" not in world.modules and "restful" in world.modules
    assert world.dashboard_users == {}
    assert not [k for k in world.config.get("mgr", {}) if k.startswith("mgr/dashboard/")]


def test_a_mgr_that_leaves_loses_its_address_option(world, mgrs):
    provider = CephDashboardProvider()
    outs = provider.create(props(world)).outs
    provider.update(world.fsid, outs, props(world, mgrs={"node1": "192.0.2.11"}))
    assert "mgr/dashboard/node2/server_addr" not in world.config["mgr"]


def test_delete_without_a_quorum_changes_nothing(world, mgrs):
    provider = CephDashboardProvider()
    outs = provider.create(props(world)).outs
    for node in world.nodes.values():
        node.running = {r for r in node.running if r[0] != "mon"}
    world.log.clear()
    provider.delete(world.fsid, outs)
    assert world.changes == []
