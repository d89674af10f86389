"""Fact parsers against JSON captured from Ceph 16.2.15 on the lab (keys replaced)."""

import pytest

from providers import ceph_facts as f
from tests.unit.fakes import captured

pytestmark = pytest.mark.unit


def test_quorum_and_monmap():
    assert f.quorum_names(captured("quorum_status.json")) == ["node1", "node2", "node3"]
    assert f.monmap_names(captured("mon_dump.json")) == ["node1", "node2", "node3"]


def test_mon_status_from_the_admin_socket():
    status = f.mon_status(captured("mon_status.json"))
    assert status == {"state": "leader", "monmap": ["node1", "node2", "node3"]}
    assert f.mon_status("") == {"state": "", "monmap": []}


def test_mgr_one_active_two_standbys():
    mgr = f.mgr_state(captured("mgr_dump.json"))
    assert mgr["available"] and mgr["active"] == "node1"
    assert mgr["standbys"] == ["node2", "node3"]


def test_mds_and_filesystems():
    daemons = f.mds_daemons(captured("fs_dump.json"))
    assert sorted(daemons) == ["node1", "node2", "node3"]
    assert sorted(daemons.values()).count("up:standby") == 2
    fs = f.filesystems(captured("fs_dump.json"))["cephfs"]
    assert len(fs["active"]) == 1 and fs["max_mds"] == 1 and fs["standby_count"] == 1
    assert len(fs["data_pool_ids"]) == 1 and fs["metadata_pool_id"] != fs["data_pool_ids"][0]


def test_health_ok_and_warn_with_report():
    assert f.health(captured("health_ok.json")) == {"status": "HEALTH_OK", "checks": {}}
    warn = f.health(captured("health_warn.json"))
    assert warn["status"] == "HEALTH_WARN" and list(warn["checks"]) == ["MON_DOWN"]
    assert f.health_report(warn) == "HEALTH_WARN: MON_DOWN: 1/3 mons down, quorum node1,node2"


def test_version():
    assert f.version(captured("version.json")) == "16.2.15"


def test_osd_tree_places_each_osd_under_its_host():
    osds = f.osds(captured("osd_tree.json"))
    assert sorted(o["host"] for o in osds.values()) == ["node1", "node2", "node3"]
    assert all(o["up"] and o["in"] for o in osds.values())


def test_raw_list():
    ((dev, osd),) = f.raw_devices(captured("raw_list.json")).items()
    assert dev == "/dev/loop0" and isinstance(osd["osd_id"], int) and osd["ceph_fsid"]


def test_pools():
    pools = f.pools(captured("pool_ls_detail.json"))
    data = pools["cephfs_data"]
    assert (data["type"], data["size"], data["min_size"], data["pg_num"]) == (
        "replicated",
        3,
        2,
        16,
    )
    assert data["application"] == "cephfs" and data["autoscale"] == "off"
    assert data["quota_max_bytes"] == 0


def test_pg_states_all_clean():
    counts = f.pg_states(captured("pg_ls_by_pool.json"))
    assert sum(counts.values()) == 16 and f.all_clean(counts)
    assert not f.all_clean({"active+clean": 3, "peering": 1})


def test_config_dump_and_auth():
    assert f.config_dump(captured("config_dump.json"))["mon"]["mon_data_avail_warn"] == "2"
    entity = f.auth_entity(captured("auth_get_client.json"))
    assert entity["entity"] == "client.cephfs-node1"
    assert entity["caps"]["mds"] == "allow rw fsname=cephfs"
