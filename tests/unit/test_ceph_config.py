"""The Ceph stack config: every refusal names its key path and the fix."""

import copy

import pytest

from components.config import ConfigError, load
from tests.unit.test_config import KEY, ROOT, stack_file

pytestmark = pytest.mark.unit


def nodes(n=3, **kw):
    return [
        {
            "name": f"osd{i}",
            "address": f"10.0.0.{i}",
            "ceph_address": f"10.204.10.{i}",
            "host_key": KEY,
            "disks": ["/dev/sdb"],
            **kw,
        }
        for i in range(1, n + 1)
    ]


BASE = {
    "nodes": nodes(),
    "ceph": {"public_network": "10.204.10.0/24"},
    "pools": [
        {"name": "meta", "pg_num": 16},
        {"name": "data", "pg_num": 32},
        {"name": "ec", "erasure": {"k": 2, "m": 1, "allow_ec_overwrites": True}},
    ],
    "filesystems": [
        {"name": "cephfs", "metadata_pool": "meta", "data_pool": "data", "extra_data_pools": ["ec"]}
    ],
    "mounts": [{"filesystem": "cephfs", "mountpoint": "/mnt/cephfs"}],
}


def with_(change):
    raw = copy.deepcopy(BASE)
    change(raw)
    return raw


def problems(raw):
    with pytest.raises(ConfigError) as err:
        load(raw, ROOT)
    return "\n".join(err.value.problems)


def test_valid_config_gives_roles_osds_pools_and_mounts():
    ceph = load(copy.deepcopy(BASE), ROOT).ceph
    assert ceph.mons == ("osd1", "osd2", "osd3") and ceph.osd_method == "lvm"
    assert ceph.osds == (("osd1", "/dev/sdb"), ("osd2", "/dev/sdb"), ("osd3", "/dev/sdb"))
    ec = next(p for p in ceph.pools if p["name"] == "ec")
    assert (ec["type"], ec["ec_k"], ec["ec_m"], ec["ec_overwrites"]) == ("erasure", 2, 1, True)
    assert [m["node"] for m in ceph.mounts] == ["osd1", "osd2", "osd3"]
    assert ceph.filesystems[0]["standby_count"] == 1 and ceph.warnings == ()


def test_example_and_lab_stacks_have_ceph_sections():
    ceph = load(stack_file("example"), ROOT).ceph
    assert ceph.public_network == "10.204.10.0/24"
    assert [p["name"] for p in ceph.pools] == ["cephfs_data", "cephfs_meta"]
    assert ceph.filesystems[0]["name"] == "cephfs"
    assert {m["mountpoint"] for m in ceph.mounts} == {"/mnt/cephfs"}


@pytest.mark.parametrize(
    "change, path, words",
    [
        (lambda r: r["pools"][0].update(size=2, min_size=3), "pools[0].size", "at least min_size"),
        (lambda r: r["pools"][0].update(min_size=0), "pools[0].min_size", "at least 1"),
        (lambda r: r["pools"][0].update(pg_num=0), "pools[0].pg_num", "positive"),
        (lambda r: r["pools"][0].update(pg_num=-8), "pools[0].pg_num", "positive"),
        (
            lambda r: r["pools"][2]["erasure"].update(k=3, m=2),
            "pools[2].erasure",
            "k+m = 5 but only 3 host(s)",
        ),
        (lambda r: r["pools"].append({"name": "meta"}), "pools[3].name", "listed twice"),
        (
            lambda r: r["filesystems"].append(dict(r["filesystems"][0])),
            "filesystems[1].name",
            "listed twice",
        ),
        (lambda r: r["mounts"][0].update(nodes=["osd9"]), "mounts[0].nodes", "unknown node 'osd9'"),
        (lambda r: [n.update(roles=["osd"]) for n in r["nodes"]], "nodes", "no node has the mon"),
        (
            lambda r: r["ceph"].update(public_network="10.204.10.0/33"),
            "ceph.public_network",
            "CIDR",
        ),
        (lambda r: r["ceph"].update(cluster_network="not-a-net"), "ceph.cluster_network", "CIDR"),
        (lambda r: r["nodes"][0].update(disks=["sdb"]), "nodes[0].disks", "absolute device path"),
        (
            lambda r: r["nodes"][0].update(disks=["/dev/sdb", "/dev/sdb"]),
            "nodes[0].disks",
            "listed twice",
        ),
        (
            lambda r: r["filesystems"][0].update(data_pool="ec", extra_data_pools=[]),
            "filesystems[0].data_pool",
            "erasure-coded",
        ),
        (
            lambda r: r["filesystems"].append(
                {"name": "fs2", "metadata_pool": "meta", "data_pool": "data"}
            ),
            "filesystems[1].metadata_pool",
            "already used by filesystem 'cephfs'",
        ),
        (
            lambda r: r["filesystems"][0].update(data_pool="nope"),
            "filesystems[0].data_pool",
            "not a pool",
        ),
        (lambda r: r["ceph"].update(osd_method="zfs"), "ceph.osd_method", "lvm"),
        (
            lambda r: r["filesystems"][0].update(layouts={"/a": "meta"}),
            "filesystems[0].layouts",
            "one of this filesystem's data pools",
        ),
        (lambda r: r["mounts"][0].update(client_id="admin"), "mounts[0].client_id", "not admin"),
        (
            lambda r: r["pools"][2]["erasure"].update(allow_ec_overwrites=False),
            "pools",
            "allow_ec_overwrites",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_key_and_fix(change, path, words):
    text = problems(with_(change))
    assert f"cephkvm:{path}" in text and words in text, text


def test_two_mons_warn_and_pass():
    def two_mons(r):
        r["nodes"][2]["roles"] = ["osd", "mgr", "mds"]

    ceph = load(with_(two_mons), ROOT).ceph
    assert ceph.mons == ("osd1", "osd2")
    assert "2 mons" in ceph.warnings[0] and "cephkvm:nodes" in ceph.warnings[0]


def test_a_node_left_out_for_its_own_problem_is_not_held_against_the_pools():
    text = problems(with_(lambda r: r["nodes"][0].update(address="10.0.0.300")))
    assert "cephkvm:nodes[0].address" in text and "pools" not in text, text


def test_a_pg_num_that_is_no_power_of_two_warns_with_the_two_nearest():
    ceph = load(with_(lambda r: r["pools"][1].update(pg_num=50)), ROOT).ceph
    assert ceph.warnings == (
        "cephkvm:pools[1].pg_num: 50 is not a power of two; Ceph warns "
        "(POOL_PG_NUM_NOT_POWER_OF_TWO) until it is: use 32 or 64",
    )


def test_no_power_of_two_warning_when_the_cluster_is_told_not_to():
    def quiet(r):
        r["pools"][1]["pg_num"] = 50
        r["ceph"]["options"] = {"mon": {"mon_warn_on_pool_pg_num_not_power_of_two": False}}

    assert load(with_(quiet), ROOT).ceph.warnings == ()


def test_more_pgs_than_ceph_lets_the_osds_hold_are_refused():
    # 3 OSDs hold 750 PG copies: 3 (the mgr's pool) + 16x3 + 32x3 (ec) + 256x3 = 915
    text = problems(with_(lambda r: r["pools"][1].update(pg_num=256)))
    assert "cephkvm:pools: 915 PG copies" in text and "mon_max_pg_per_osd 250 x 3" in text
    assert "the largest: cephkvm:pools[1].pg_num" in text


def test_more_osds_or_a_higher_limit_make_room_for_the_pgs():
    def more_osds(r):
        r["pools"][1]["pg_num"] = 256
        r["nodes"] = nodes(4)

    assert load(with_(more_osds), ROOT).ceph.pools

    def higher(r):
        r["pools"][1]["pg_num"] = 256
        r["ceph"]["options"] = {"global": {"mon_max_pg_per_osd": 400}}

    assert load(with_(higher), ROOT).ceph.pools


def test_pools_without_a_ceph_section_are_refused():
    raw = with_(lambda r: r.pop("ceph"))
    assert "cephkvm:pools: needs a cephkvm:ceph section" in problems(raw)


def test_replicated_size_above_the_hosts_is_refused():
    text = problems(with_(lambda r: r["pools"][0].update(size=4, min_size=2)))
    assert "cephkvm:pools[0].size: 4 copies but only 3 host(s)" in text


@pytest.mark.parametrize("value", ["false", "true", False, True])
def test_opt_ins_take_real_booleans_and_pulumi_config_strings(value):
    raw = with_(lambda r: r["pools"][0].update(allow_delete=value))
    pool = next(p for p in load(raw, ROOT).ceph.pools if p["name"] == "meta")
    assert pool["allow_delete"] is (value in (True, "true"))


@pytest.mark.parametrize(
    "where, change",
    [
        ("cephkvm:pools[0].allow_delete", lambda r: r["pools"][0].update(allow_delete="no")),
        ("cephkvm:pools[0].allow_delete", lambda r: r["pools"][0].update(allow_delete="False")),
        (
            "cephkvm:pools[2].erasure.allow_ec_overwrites",
            lambda r: r["pools"][2]["erasure"].update(allow_ec_overwrites="yes"),
        ),
        ("cephkvm:ceph.allow_data_loss", lambda r: r["ceph"].update(allow_data_loss="off")),
        ("cephkvm:ceph.allow_osd_removal", lambda r: r["ceph"].update(allow_osd_removal=1)),
        ("cephkvm:ceph.wipe_devices", lambda r: r["ceph"].update(wipe_devices="0")),
        (
            "cephkvm:filesystems[0].allow_delete",
            lambda r: r["filesystems"][0].update(allow_delete="yes"),
        ),
        ("cephkvm:mounts[0].force_unmount", lambda r: r["mounts"][0].update(force_unmount="on")),
    ],
)
def test_anything_else_as_an_opt_in_is_refused_with_its_key(where, change):
    found = problems(with_(change))
    assert f"{where}: " in found and "write true or false" in found, found


@pytest.mark.parametrize(
    "where, change, suggestion",
    [
        ("cephkvm:nodes[0].rolez", lambda r: r["nodes"][0].update(rolez=["kvm"]), "roles"),
        (
            "cephkvm:ceph.allow_dataloss",
            lambda r: r["ceph"].update(allow_dataloss=True),
            "allow_data_loss",
        ),
        ("cephkvm:pools[0].sizee", lambda r: r["pools"][0].update(sizee=2), "size"),
        ("cephkvm:pools[2].erasure.kk", lambda r: r["pools"][2]["erasure"].update(kk=2), "k"),
        (
            "cephkvm:filesystems[0].max_mdss",
            lambda r: r["filesystems"][0].update(max_mdss=2),
            "max_mds",
        ),
        (
            "cephkvm:mounts[0].mountpont",
            lambda r: r["mounts"][0].update(mountpont="/x"),
            "mountpoint",
        ),
        ("cephkvm:kvm.virt", lambda r: r.update(kvm={"virt": "kvm"}), "virt_type"),
        ("cephkvm:ssh.keyfile", lambda r: r.update(ssh={"keyfile": "/k"}), "key_file"),
    ],
)
def test_a_typo_in_any_section_is_refused_with_the_closest_key(where, change, suggestion):
    found = problems(with_(change))
    assert f"{where}: unknown key; did you mean {suggestion}?" in found, found


def test_a_destroy_is_allowed_only_when_every_piece_of_data_may_go():
    """allow_data_loss alone would let a destroy remove VMs and mounts before a protected
    pool refused it."""
    from components.ceph import destroy_allowed

    def allowed(change):
        return destroy_allowed(load(with_(change), ROOT).ceph)

    assert not allowed(lambda r: None)
    assert not allowed(lambda r: r["ceph"].update(allow_data_loss=True))
    assert not allowed(lambda r: [p.update(allow_delete=True) for p in r["pools"]])

    def all_of_it(r):
        r["ceph"]["allow_data_loss"] = True
        for p in r["pools"] + r["filesystems"]:
            p["allow_delete"] = True

    assert allowed(all_of_it)


@pytest.mark.parametrize("value", [True, {}, {"port": 8443}])
def test_dashboard_on_with_its_defaults_and_its_package(value):
    stack = load(with_(lambda r: r["ceph"].update(dashboard=value)), ROOT)
    assert (stack.ceph.dashboard.port, stack.ceph.dashboard.user) == (8443, "admin")
    assert "ceph-mgr-dashboard" in stack.packages


def test_dashboard_off_by_default_and_with_false():
    assert load(copy.deepcopy(BASE), ROOT).ceph.dashboard is None
    stack = load(with_(lambda r: r["ceph"].update(dashboard=False)), ROOT)
    assert stack.ceph.dashboard is None and "ceph-mgr-dashboard" not in stack.packages


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda r: r["ceph"].update(dashboard={"port": 80}), "ceph.dashboard.port"),
        (lambda r: r["ceph"].update(dashboard={"user": "a b"}), "ceph.dashboard.user"),
        (lambda r: r["ceph"].update(dashboard={"passwd": "x"}), "ceph.dashboard.passwd"),
        (
            lambda r: [
                r["ceph"].update(dashboard={}),
                *[n.update(roles=["mon", "osd"]) for n in r["nodes"]],
            ],
            "ceph.dashboard: the dashboard is served by the mgrs",
        ),
    ],
)
def test_bad_dashboard_config_is_named(change, words):
    assert f"cephkvm:{words}" in problems(with_(change))


def test_osds_without_any_mgr_are_refused_at_preview():
    """An OSD's removal asks a mgr, and the last mgr's removal waits for the OSDs."""

    def roles(raw, first):
        for i, n in enumerate(raw["nodes"]):
            n.update(roles=first if i == 0 else ["mon", "mds", "osd"])

    found = problems(with_(lambda r: roles(r, ["mon", "mds", "osd"])))
    assert "cephkvm:nodes: OSDs need a mgr" in found
    assert load(with_(lambda r: roles(r, ["mon", "mgr", "mds", "osd"])), ROOT).ceph.mgrs == (
        "osd1",
    )
