"""What `pulumi preview` says for each kind of change, checked with the real CLI and the real
providers' check and diff, against a state in which the runbook layout already exists
(tests/engine/synthetic.py). No host is reached: preview opens no connection."""

import json

import pytest

from tests.cli import Project
from tests.engine import synthetic

pytestmark = pytest.mark.engine
NODES = ("osd1", "osd2", "osd3")


def _pool(c, name="cephfs_data"):
    return next(p for p in c["cephkvm:pools"] if p["name"] == name)


def _vm(c):
    return c["cephkvm:vms"][0]


def _bridge(c):
    return c["cephkvm:bridges"][0]


def _each(prefix_suffix: str, op: str) -> dict:
    return {prefix_suffix.format(n): op for n in NODES}


# (what changes, how, what preview must say per resource; every other resource unchanged)
def _rename_data_pool(c):
    _pool(c).update(name="cephfs_files", key="cephfs_data")
    c["cephkvm:filesystems"][0]["data_pool"] = "cephfs_files"


CHANGES = [
    ("nothing", lambda c: None, {}),
    (
        # the pool keeps its key: renamed in place, and the filesystem only records the name
        "data pool renamed through its key",
        _rename_data_pool,
        {"pool-cephfs_data": "update", "fs-cephfs": "update"},
    ),
    ("pool size", lambda c: _pool(c).update(size=2), {"pool-cephfs_data": "update"}),
    ("pool pg_num", lambda c: _pool(c).update(pg_num=128), {"pool-cephfs_data": "update"}),
    (
        "pool application",
        lambda c: _pool(c).update(application="rbd"),
        {"pool-cephfs_data": "update"},
    ),
    (
        "pool quota",
        lambda c: _pool(c).update(quota_max_bytes=1 << 40),
        {"pool-cephfs_data": "update"},
    ),
    (
        "cluster option",
        lambda c: c["cephkvm:ceph"].update(options={"mon": {"mon_data_avail_warn": 3}}),
        {"ceph-config": "update"},
    ),
    (
        "no MDS on osd3",
        lambda c: c["cephkvm:nodes"][2].update(roles=["mon", "mgr", "osd", "kvm"]),
        {"mds-osd3": "delete"},
    ),
    (
        "OSD removal allowed",
        lambda c: c["cephkvm:ceph"].update(allow_osd_removal=True),
        _each("osd-{}-sdb", "update"),
    ),
    (
        "mount options",
        lambda c: c["cephkvm:mounts"][0].update(options=["noatime"]),
        _each("mount-{}-mnt-cephfs", "update"),
    ),
    (
        "mountpoint",
        lambda c: c["cephkvm:mounts"][0].update(mountpoint="/srv/cephfs"),
        {**_each("mount-{}-mnt-cephfs", "delete"), **_each("mount-{}-srv-cephfs", "create")},
    ),
    ("VM memory", lambda c: _vm(c).update(memory_mib=1024), {"virt-01": "update"}),
    (
        "VM migration bandwidth (a field the schema alone added)",
        lambda c: _vm(c).update(migration_bandwidth_mib=100),
        {"virt-01": "update"},
    ),
    ("VM disk grows", lambda c: _vm(c).update(disk_gib=20), {"virt-01": "update"}),
    ("VM vCPUs", lambda c: _vm(c).update(vcpus=2), {"virt-01": "update"}),
    (
        "VM cloud-init",
        lambda c: _vm(c)["cloud_init"].update(hostname="virt-01b"),
        {"virt-01": "update"},
    ),
    (
        "VM template",
        lambda c: _vm(c).update(template="/home/cephsvc/jammy.img"),
        {"virt-01": "replace"},
    ),
    (
        "bridge address",
        lambda c: _bridge(c)["addresses"].update(osd2=["10.20.10.42/24"]),
        {"osd2-br0": "update"},
    ),
    (
        "bridge DNS",
        lambda c: _bridge(c).update(nameservers=["10.20.10.13"]),
        _each("{}-br0", "update"),
    ),
    (
        "rolling restart",
        lambda c: c["cephkvm:ceph"].update(restart="2026-12-02"),
        {
            **_each("mon-{}", "update"),
            **_each("mgr-{}", "update"),
            **_each("mds-{}", "update"),
            **_each("osd-{}-sdb", "update"),
        },
    ),
    (
        "node virt type",
        lambda c: c["cephkvm:kvm"].update(virt_type="auto"),
        _each("{}-facts", "update"),
    ),
    (
        "extra package",
        lambda c: c.update({"cephkvm:packages": ["htop"]}),
        _each("{}-prep", "update"),
    ),
]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    project = Project(str(tmp_path_factory.mktemp("changes")), "example")
    synthetic.settle(project)
    return project


@pytest.mark.parametrize("what, change, expected", CHANGES, ids=[row[0] for row in CHANGES])
def test_preview_says_update_or_replace(example, what, change, expected):
    steps = example.preview_changes(change)
    said = {name: step["op"] for name, step in steps.items()}
    assert said == expected, what
    assert not [line for line in example.ssh_log_lines() if line.startswith("connect")]


def test_vm_on_another_node_is_a_live_migration_not_a_new_vm(example):
    steps = example.preview_changes(lambda c: _vm(c).update(node="osd2"))
    # an update of the same resource (its domain and disk move), not a delete and a create
    assert {name: step["op"] for name, step in steps.items()} == {"virt-01": "update"}
    old, new = steps["virt-01"]["oldState"], steps["virt-01"]["newState"]
    assert (old["inputs"]["node"], new["inputs"]["node"]) == ("osd1", "osd2")


def test_pinning_the_current_fsid_changes_nothing_and_another_is_refused(example):
    fsid = synthetic.STAND_INS["CephCluster"]({"nodes": [], "mons": []})["fsid"]
    steps = example.preview_changes(lambda c: c["cephkvm:ceph"].update(fsid=fsid))
    assert {n: s["op"] for n, s in steps.items()} == {"ceph-cluster": "update"}, (
        "state only: no replace, no host work"
    )
    out = refused(
        example, lambda c: c["cephkvm:ceph"].update(fsid="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
    )
    assert "this stack's cluster is" in out and "cephkvm:ceph.fsid" in out, out[-2000:]
    assert "Traceback" not in out


def refused(example, change) -> str:
    """The output of a preview with change(config) that must fail; no host reached."""
    proc = example.preview_with(change, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert not [line for line in example.ssh_log_lines() if line.startswith("connect")]
    return out


@pytest.mark.parametrize(
    "what, change, urn",
    [
        (
            "an OSD's disk taken away",
            lambda c: c["cephkvm:nodes"][1].update(disks=["/dev/sdc"]),
            "osd-osd2-sdb",
        ),
        (
            "the filesystem taken away",
            lambda c: c.update({"cephkvm:filesystems": [], "cephkvm:mounts": []}),
            "fs-cephfs",
        ),
    ],
)
def test_removing_data_without_its_opt_in_is_refused_at_preview(example, what, change, urn):
    out = refused(example, change)
    assert "protect" in out and urn in out, what


def test_an_osd_whose_protection_was_lifted_moves_to_another_disk(example):
    """After an `up` with allow_osd_removal (which lifts the protection in state; here
    `pulumi state unprotect` stands in for that up), a disk change previews as the old OSD
    deleted and a new one created."""
    urn = next(
        r["urn"]
        for r in json.loads(example.run("stack", "export", "--stack", example.stack).stdout)[
            "deployment"
        ]["resources"]
        if r["urn"].endswith("::osd-osd2-sdb")
    )
    example.run("state", "unprotect", "--stack", example.stack, "--yes", urn)
    try:
        steps = example.preview_changes(
            lambda c: (
                c["cephkvm:nodes"][1].update(disks=["/dev/sdc"]),
                c["cephkvm:ceph"].update(allow_osd_removal=True),
            )
        )
        said = {name: step["op"] for name, step in steps.items()}
        assert said == {
            "osd-osd2-sdb": "delete",
            "osd-osd2-sdc": "create",
            **{f"osd-{n}-sdb": "update" for n in ("osd1", "osd3")},
        }, said
    finally:
        example.run("state", "protect", "--stack", example.stack, "--yes", urn)


@pytest.mark.parametrize("flags", [(), ("--skip-preview",)])
def test_destroy_without_opt_ins_is_refused_before_any_host_is_touched(example, flags):
    """Even without a preview: the guard is the first delete and it is protected."""
    proc = example.run("destroy", "--yes", *flags, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "protect" in out
    assert "destroy-needs-ceph.allow_data_loss" in out, out
    deleting = [line for line in out.splitlines() if "deleting" in line or "deleted" in line]
    assert all("DestroyGuard" in line for line in deleting), deleting
    assert not [line for line in example.ssh_log_lines() if line.startswith("connect")]


def test_maintenance_previews_each_daemon_stop_and_each_vm_move(example):
    """The dry run of a node's maintenance: the gate, the node's four daemons, and the VM's
    live migration to the emptiest node; no host reached."""
    steps = example.preview_changes(lambda c: c["cephkvm:nodes"][0].update(maintenance=True))
    said = {name: step["op"] for name, step in steps.items()}
    assert said == {
        "maintenance": "create",
        "mon-osd1": "update",
        "mgr-osd1": "update",
        "mds-osd1": "update",
        "osd-osd1-sdb": "update",
        "virt-01": "update",
    }, said
    assert steps["mon-osd1"]["newState"]["inputs"]["ensure"] == "maintenance"
    old, new = steps["virt-01"]["oldState"], steps["virt-01"]["newState"]
    assert (old["inputs"]["node"], new["inputs"]["node"]) == ("osd1", "osd2")
    assert not [line for line in example.ssh_log_lines() if line.startswith("connect")]


def test_maintenance_of_two_of_three_mon_nodes_is_refused_at_preview(example):
    out = refused(example, lambda c: c.update({"cephkvm:maintenance": ["osd1", "osd2"]}))
    assert "cephkvm:maintenance: osd1, osd2 would stop 2 of the 3 mons" in out
    assert "Traceback" not in out


def test_a_rolling_restart_goes_kind_by_kind_in_cephadms_order(example):
    """mons, mgrs, OSDs, MDS. Within a kind no dependency chains the nodes (a bring-up makes
    them side by side); the provider's one-restart lock takes one down at a time
    (tests/unit/test_maintenance.py)."""
    steps = example.preview_changes(lambda c: c["cephkvm:ceph"].update(restart="r1"))

    def needs(name):
        return {urn.rsplit("::", 1)[1] for urn in steps[name]["newState"]["dependencies"]}

    for kind in ("mon", "mgr", "mds"):
        assert not {f"{kind}-osd1", f"{kind}-osd2"} & needs(f"{kind}-osd3")
    assert not {"osd-osd1-sdb", "osd-osd2-sdb"} & needs("osd-osd3-sdb")
    assert {"osd-osd1-sdb", "osd-osd2-sdb", "osd-osd3-sdb"} <= needs("mds-osd1")
    assert {"mgr-osd3", "ceph-config"} <= needs("osd-osd1-sdb")
    assert steps["mon-osd1"]["newState"]["inputs"]["restart"] == "r1"


def test_an_option_read_only_at_start_restarts_the_daemons_it_applies_to(example):
    """Preview says which daemons restart: a startup-only OSD option goes to every node's
    ceph.conf and restarts the OSDs; a runtime option restarts nothing."""
    from components.ceph_restart import STARTUP_ONLY

    assert "osd_op_num_shards" in STARTUP_ONLY  # Ceph 16 reads it only at start
    steps = example.preview_changes(
        lambda c: c["cephkvm:ceph"].update(options={"osd": {"osd_op_num_shards": 4}})
    )
    said = {name: step["op"] for name, step in steps.items()}
    assert said == {
        "ceph-config": "update",
        **{f"conf-osd{i}": "update" for i in (1, 2, 3)},
        **{f"osd-osd{i}-sdb": "update" for i in (1, 2, 3)},
    }, said
    assert "osd_op_num_shards = 4" in steps["conf-osd1"]["newState"]["inputs"]["conf"]
    assert steps["osd-osd1-sdb"]["newState"]["inputs"]["restart"].startswith("conf-")
    runtime = example.preview_changes(
        lambda c: c["cephkvm:ceph"].update(options={"osd": {"osd_max_backfills": 2}})
    )
    assert {name: step["op"] for name, step in runtime.items()} == {"ceph-config": "update"}


def planned_needs(tmp_path) -> dict:
    """name -> the names it depends on, in the plan of a first `up` (no state)."""
    fresh = Project(str(tmp_path), "example")
    return {
        s["urn"].rsplit("::", 1)[1]: {u.rsplit("::", 1)[1] for u in s["newState"]["dependencies"]}
        for s in fresh.preview_json()["steps"]
        if "dependencies" in (s.get("newState") or {})
    }


def test_a_nodes_ceph_comes_after_its_bridges(tmp_path):
    """The bridge takes over the address the node's Ceph daemons use: they come after it, so
    a destroy takes them down before the bridge moves that address back (a mon being
    removed while its node's network blipped timed out its cluster's reads). One mgr comes
    first, beside the OSDs, each standby after its own node's OSDs: three mgrs starting at
    once on a small node held the OSDs back. The pools come after that mgr and every OSD."""
    needs = planned_needs(tmp_path)
    for n in NODES:
        assert f"{n}-br0" in needs[f"conf-{n}"], needs[f"conf-{n}"]
        assert f"conf-{n}" in needs[f"mon-{n}"] and f"conf-{n}" in needs[f"osd-{n}-sdb"]
    osds = {f"osd-{n}-sdb" for n in NODES}
    standbys = {f"mgr-{n}" for n in NODES[1:]}
    assert "ceph-config" in needs["mgr-osd1"] and not osds & needs["mgr-osd1"]
    for name in osds:
        assert "ceph-config" in needs[name] and not {"mgr-osd1", *standbys} & needs[name]
    pool = needs["pool-cephfs_data"]
    assert {"mgr-osd1", *osds} <= pool and not standbys & pool, pool
    for n in NODES[1:]:
        mgr = needs[f"mgr-{n}"]
        assert {"mgr-osd1", f"osd-{n}-sdb"} <= mgr and not (osds - {f"osd-{n}-sdb"}) & mgr, mgr
