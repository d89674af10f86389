import pytest

from providers.ceph_pool import CephPoolProvider, delta
from providers.cephfs_filesystem import CephFilesystemProvider

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("ceph_up")]
NAMES = ["node1", "node2", "node3"]


def pool(world, **kw):
    result = CephPoolProvider().check(
        {},
        {
            "fsid": world.fsid,
            "admin": [{"connection": n["connection"]} for n in world.props_nodes()],
            "name": "data",
            "timeout": 2,
            **kw,
        },
    )
    assert not result.failures, result.failures
    return result.inputs


def test_replicated_pool_is_created_with_its_settings(world):
    outs = (
        CephPoolProvider()
        .create(
            pool(
                world, size=3, min_size=2, pg_num=16, application="cephfs", quota_max_bytes=1 << 30
            )
        )
        .outs
    )
    p = world.pools["data"]
    assert (p["size"], p["min_size"], p["pg_num"], p["pg_autoscale_mode"]) == (3, 2, 16, "off")
    assert list(p["application_metadata"]) == ["cephfs"] and p["quota_max_bytes"] == 1 << 30
    assert outs["pool_id"] == p["pool_id"]


def test_create_sets_autoscale_at_once_and_asks_the_osds_for_fresh_pg_states(world):
    """The fake mgr lists a new pool's PGs as unknown until the OSDs report them; they
    report when told to (`flush_pg_stats`), else not within the 2 s timeout."""
    CephPoolProvider().create(pool(world, pg_num=16, application="rbd"))
    changes = [line.split("--connect-timeout 15 ")[1] for line in world.changes]
    assert changes == [
        "osd pool create data 16 16 replicated --autoscale-mode=off",
        "osd pool application enable data rbd",
    ]
    commands = [c.line.split("--connect-timeout 15 ")[-1] for c in world.log]
    flush = commands.index("tell 'osd.*' flush_pg_stats")
    assert flush < commands.index("pg ls-by-pool data -f json")


def test_a_pool_whose_pgs_the_mgr_does_not_list_yet_is_not_clean(world):
    world.unlisted.add("data")
    with pytest.raises(TimeoutError, match="pool data's placement groups"):
        CephPoolProvider().create(pool(world, pg_num=16, timeout=0))


def test_second_run_changes_nothing(world):
    CephPoolProvider().create(pool(world, pg_num=16, application="rbd"))
    world.log.clear()
    CephPoolProvider().create(pool(world, pg_num=16, application="rbd"))
    assert world.changes == []


def test_erasure_pool_gets_its_profile_and_overwrites(world):
    CephPoolProvider().create(
        pool(world, type="erasure", ec_k=2, ec_m=1, ec_overwrites=True, pg_num=8)
    )
    p = world.pools["data"]
    assert p["type"] == 3 and (p["size"], p["min_size"]) == (3, 3)
    assert world.profiles["cephkvm-data"] == {"k": 2, "m": 1}
    assert "ec_overwrites" in p["flags_names"]


def test_update_applies_only_the_delta(world):
    provider = CephPoolProvider()
    outs = provider.create(pool(world, pg_num=16, application="rbd")).outs
    world.log.clear()
    new = pool(world, size=2, min_size=1, pg_num=32, application="rbd")
    assert provider.diff("1", outs, new).replaces == []
    provider.update("1", outs, new)
    changes = [line.split("--connect-timeout 15 ")[1] for line in world.changes]
    assert changes == [
        "osd pool set data size 2",
        "osd pool set data min_size 1",
        "osd pool set data pg_num 32",
    ]


def test_rename_in_place_keeps_the_pool(world):
    provider = CephPoolProvider()
    outs = provider.create(pool(world, pg_num=8)).outs
    new = pool(world, pg_num=8, name="data2", key="data")
    assert provider.diff("1", outs, new).replaces == []
    provider.update("1", outs, new)
    assert list(world.pools) == ["data2"] and world.pools["data2"]["pool_id"] == outs["pool_id"]


def test_refresh_shows_a_hand_resized_pool(world):
    provider = CephPoolProvider()
    outs = provider.create(pool(world, pg_num=8)).outs
    world.pools["data"]["size"] = 2
    read = provider.read(str(outs["pool_id"]), outs).outs
    assert read["size"] == 2
    assert provider.diff("1", read, pool(world, pg_num=8)).changes
    provider.update("1", read, pool(world, pg_num=8))
    assert world.pools["data"]["size"] == 3


def test_autoscaled_pg_num_is_not_drift(world):
    provider = CephPoolProvider()
    outs = provider.create(pool(world)).outs
    world.pools["data"]["pg_num_target"] = 128
    read = provider.read(str(outs["pool_id"]), outs).outs
    assert not provider.diff("1", read, pool(world)).changes


def test_delete_is_refused_unless_allowed(world):
    outs = CephPoolProvider().create(pool(world, pg_num=8)).outs
    with pytest.raises(Exception, match="refusing to delete pool data.*allow_delete"):
        CephPoolProvider().delete("1", outs)
    assert "data" in world.pools
    outs = CephPoolProvider().update("1", outs, pool(world, pg_num=8, allow_delete=True)).outs
    CephPoolProvider().delete("1", outs)
    assert "data" not in world.pools
    assert "mon_allow_pool_delete" not in world.config.get("mon", {})


@pytest.mark.parametrize(
    "change, replaces",
    [
        ({}, None),
        ({"size": 2}, []),
        ({"min_size": 1}, []),
        ({"pg_num": 64}, []),
        ({"autoscale": "warn"}, []),
        ({"application": "rgw"}, []),
        ({"quota_max_bytes": 5}, []),
        ({"name": "other"}, []),
        ({"type": "erasure"}, ["type"]),
        ({"ec_k": 4}, ["ec_k"]),
        ({"ec_failure_domain": "osd"}, ["ec_failure_domain"]),
    ],
)
def test_diff_table(change, replaces):
    old = {
        "name": "p",
        "key": "p",
        "type": "replicated",
        "size": 3,
        "min_size": 2,
        "pg_num": 32,
        "autoscale": "off",
        "application": "rbd",
        "pool_id": 1,
    }
    result = CephPoolProvider().diff("1", old, {**old, **change})
    assert result.changes == (replaces is not None)
    assert result.replaces == (replaces or [])
    assert result.delete_before_replace == bool(replaces)


def test_delta_disables_the_old_application_first():
    found = {
        "name": "p",
        "type": "replicated",
        "size": 3,
        "min_size": 2,
        "pg_num": 8,
        "autoscale": "off",
        "application": "rbd",
        "quota_max_bytes": 0,
        "quota_max_objects": 0,
    }
    wanted = {**found, "application": "cephfs"}
    assert delta(found, wanted) == [
        ["osd", "pool", "application", "disable", "p", "rbd", "--yes-i-really-mean-it"],
        ["osd", "pool", "application", "enable", "p", "cephfs"],
    ]


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"size": 1, "min_size": 2}, "size"),
        ({"min_size": 0}, "min_size"),
        ({"pg_num": 0}, "pg_num"),
        ({"type": "mirrored"}, "type"),
        ({"type": "erasure", "ec_k": 0, "ec_m": 1}, "ec_k"),
        ({"autoscale": "maybe"}, "autoscale"),
    ],
)
def test_check_names_the_field(bad, field):
    failures = CephPoolProvider().check({}, {"name": "p", **bad}).failures
    assert field in [f.property for f in failures]


def test_filesystem_over_pools_with_extra_ec_pool_and_standbys(world):
    for name, kw in (
        ("meta", {}),
        ("data", {}),
        ("ec", {"type": "erasure", "ec_k": 2, "ec_m": 1, "ec_overwrites": True}),
    ):
        CephPoolProvider().create(pool(world, name=name, key=name, pg_num=8, **kw))
    fsp = CephFilesystemProvider()
    props = fsp.check(
        {},
        {
            "fsid": world.fsid,
            "admin": [{"connection": n["connection"]} for n in world.props_nodes()],
            "name": "cephfs",
            "metadata_pool": "meta",
            "data_pool": "data",
            "extra_data_pools": ["ec"],
            "standby_count": 1,
            "layouts": {"/archive": "ec"},
            "timeout": 2,
        },
    ).inputs
    fsp.create(props)
    assert world.layouts == {"/run/cephkvm-layouts-ceph-cephfs/archive": "ec"}
    assert world.nodes["node1"].mounts == {}, "the layout mount is gone again"
    fs = world.fs["cephfs"]
    assert fs["meta"] == "meta" and fs["data"] == ["data", "ec"] and fs["standby"] == 1
    world.log.clear()
    read = fsp.read("cephfs", props).outs
    assert read["extra_data_pools"] == ["ec"] and not fsp.diff("cephfs", read, props).changes
    with pytest.raises(Exception, match="refusing to delete CephFS cephfs"):
        fsp.delete("cephfs", props)
    assert fsp.diff("cephfs", props, {**props, "data_pool": "ec"}).replaces == ["data_pool"]
    assert fsp.diff("cephfs", props, {**props, "max_mds": 2}).replaces == []


def test_a_layout_must_name_one_of_the_data_pools():
    failures = (
        CephFilesystemProvider()
        .check(
            {},
            {
                "name": "fs",
                "fsid": "f",
                "metadata_pool": "m",
                "data_pool": "d",
                "extra_data_pools": ["ec"],
                "layouts": {"/a": "m"},
            },
        )
        .failures
    )
    assert [f.property for f in failures] == ["layouts"]


def test_a_cluster_output_not_known_yet_in_preview_is_not_a_replace():
    from pulumi.runtime.rpc import UNKNOWN

    old = {
        "name": "p",
        "key": "p",
        "type": "replicated",
        "size": 3,
        "min_size": 2,
        "fsid": "f",
        "pool_id": 1,
    }
    from pulumi.output import Unknown

    for unknown in (UNKNOWN, Unknown()):  # the sentinel, and what deserialization makes of it
        result = CephPoolProvider().diff("1", old, {**old, "fsid": unknown})
        assert not result.changes and result.replaces == []


def _fs_with_extra_pool(world):
    for name, kw in (("meta", {}), ("data", {}), ("extra", {})):
        CephPoolProvider().create(pool(world, name=name, key=name, pg_num=8, **kw))
    fsp = CephFilesystemProvider()
    props = fsp.check(
        {},
        {
            "fsid": world.fsid,
            "admin": [{"connection": n["connection"]} for n in world.props_nodes()],
            "name": "cephfs",
            "metadata_pool": "meta",
            "data_pool": "data",
            "extra_data_pools": ["extra"],
            "timeout": 2,
        },
    ).inputs
    return fsp, fsp.create(props).outs


def test_taking_a_data_pool_out_needs_allow_delete_at_preview(world):
    fsp, outs = _fs_with_extra_pool(world)
    failures = fsp.check(outs, {**outs, "extra_data_pools": []}).failures
    assert [f.property for f in failures] == ["extra_data_pools"]
    assert "allow_delete" in failures[0].reason
    assert not fsp.check(outs, {**outs, "extra_data_pools": [], "allow_delete": True}).failures


def test_a_data_pool_holding_objects_is_never_taken_out(world):
    fsp, outs = _fs_with_extra_pool(world)
    world.pools["extra"]["objects"] = 12
    news = {**outs, "extra_data_pools": [], "allow_delete": True}
    with pytest.raises(Exception, match="holds 12 objects"):
        fsp.update("cephfs", outs, news)
    assert world.fs["cephfs"]["data"] == ["data", "extra"]
    world.pools["extra"]["objects"] = 0
    fsp.update("cephfs", outs, news)
    assert world.fs["cephfs"]["data"] == ["data"]


def test_a_data_pool_attached_by_hand_is_not_taken_out_without_allow_delete(world):
    """Preview cannot see it (it is in no config), so up refuses before rm_data_pool."""
    fsp, outs = _fs_with_extra_pool(world)
    found = {**outs, "extra_data_pools": ["extra"]}  # as a refresh reads it
    with pytest.raises(Exception, match="refusing to take pool extra out of CephFS cephfs"):
        fsp.update("cephfs", found, {**outs, "extra_data_pools": []})
    assert world.fs["cephfs"]["data"] == ["data", "extra"]
    assert not [c for c in world.changes if "rm_data_pool" in c]


def _renamed_under_the_filesystem(world):
    """A filesystem over meta/data/ec, then `data` renamed to data2 and `ec` to cold (their
    keys stay): the CephPool updates, and the filesystem's inputs as the component makes
    them (components/ceph.py keyed)."""
    from providers.cephfs_filesystem import keyed

    fsp, outs = _fs_with_extra_pool(world)
    for key, name in (("data", "data2"), ("extra", "cold")):
        old = pool(world, name=key, key=key, pg_num=8)
        CephPoolProvider().update(key, old, pool(world, name=name, key=key, pg_num=8))
    news = fsp.check(
        outs,
        keyed(
            {**{k: v for k, v in outs.items() if k != "pool_names"}, "data_pool": "data2"}
            | {"extra_data_pools": ["cold"]},
            {"data": "data2", "extra": "cold"},
        ),
    ).inputs
    return fsp, outs, news


def test_a_pool_renamed_through_its_key_is_no_filesystem_replace(world):
    fsp, outs, news = _renamed_under_the_filesystem(world)
    assert (news["data_pool"], news["extra_data_pools"]) == ("data", ["extra"])
    result = fsp.diff("cephfs", outs, news)
    assert result.replaces == [] and not fsp.check(outs, news).failures
    world.log.clear()
    fsp.update("cephfs", outs, news)
    assert world.changes == [], "the pools were renamed by CephPool; nothing to do here"
    read = fsp.read("cephfs", news).outs
    assert (read["data_pool"], read["extra_data_pools"]) == ("data", ["extra"])
    assert not fsp.diff("cephfs", read, news).changes


def test_a_state_written_before_keys_names_the_renamed_pool_and_stays(world):
    """An older state (no pool_names) that recorded a renamed pool by its new name."""
    fsp, outs, news = _renamed_under_the_filesystem(world)
    old_state = {**outs, "data_pool": "data2", "extra_data_pools": ["cold"]}
    old_state.pop("pool_names", None)
    result = fsp.diff("cephfs", old_state, news)
    assert result.replaces == [] and not fsp.check(old_state, news).failures


def test_commands_get_the_pools_current_names(world):
    fsp, outs, news = _renamed_under_the_filesystem(world)
    world.fs.pop("cephfs")
    fsp.create(news)
    assert world.fs["cephfs"]["data"] == ["data2", "cold"]
