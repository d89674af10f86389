import pytest

from providers.cephfs_mount import CephFSMountProvider, fstab_line, with_line
from tests.unit.fakes import Crash

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("ceph_up")]
NAMES = ["node1", "node2", "node3"]
LINE = "none /mnt/cephfs fuse.ceph ceph.id=cephfs-node1,ceph.client_fs=cephfs,_netdev,defaults 0 0"


def props(world, **kw):
    result = CephFSMountProvider().check(
        {},
        {
            "fsid": world.fsid,
            "node": "node1",
            "connection": world.props_nodes()[0]["connection"],
            "fs_name": "cephfs",
            "mountpoint": "/mnt/cephfs",
            "mon_hosts": ["192.0.2.11:6789", "192.0.2.12:6789"],
            **kw,
        },
    )
    assert not result.failures, result.failures
    return result.inputs


def fstab(world):
    return world.nodes["node1"].files["/etc/fstab"]


def test_create_keys_fstab_and_mount(world):
    outs = CephFSMountProvider().create(props(world)).outs
    node = world.nodes["node1"]
    assert fstab(world) == "# fstab\n" + LINE + "\n"
    assert node.mounts == {"/mnt/cephfs": "fuse.ceph-fuse"}
    assert node.modes["/etc/ceph/ceph.client.cephfs-node1.keyring"] == ("600", "root:root")
    assert world.auth["client.cephfs-node1"]["caps"]["mds"] == "allow rws fsname=cephfs"
    assert outs["client_key"] and outs["fstab_line"] == LINE
    assert not [line for line in world.log.lines if outs["client_key"] in line]


def test_a_key_made_before_snapshots_gets_the_s_flag(world):
    """Keys made by earlier versions (`rw`): VmSnapshot needs `rws` on the mount's client."""
    old = {"mds": "allow rw fsname=cephfs", "mon": "allow r fsname=cephfs", "osd": "x"}
    world.auth["client.cephfs-node1"] = {"key": "AQBold==", "caps": old}
    CephFSMountProvider().create(props(world))
    assert world.auth["client.cephfs-node1"]["caps"] == {**old, "mds": "allow rws fsname=cephfs"}


def test_second_run_changes_nothing_but_the_probe(world):
    CephFSMountProvider().create(props(world))
    world.log.clear()
    CephFSMountProvider().create(props(world))
    assert [line for line in world.changes if "cephkvm-probe" not in line] == []
    assert fstab(world).count("/mnt/cephfs") == 1


@pytest.mark.parametrize("step", range(1, 6))
def test_crash_then_rerun_leaves_exactly_one_fstab_line(world, step):
    world.log.crash_at = step
    with pytest.raises(Crash):
        CephFSMountProvider().create(props(world))
    CephFSMountProvider().create(props(world))
    assert [ln for ln in fstab(world).splitlines() if "/mnt/cephfs" in ln] == [LINE]


def test_a_stale_line_for_the_mountpoint_is_replaced_not_duplicated():
    text = "UUID=1 / ext4 defaults 0 1\nnone /mnt/cephfs fuse.ceph ceph.id=admin 0 0\n"
    assert with_line(text, LINE, "/mnt/cephfs") == "UUID=1 / ext4 defaults 0 1\n" + LINE + "\n"
    assert with_line(with_line(text, LINE, "/mnt/cephfs"), LINE, "/mnt/cephfs").count(LINE) == 1


def test_option_change_remounts(world):
    provider = CephFSMountProvider()
    outs = provider.create(props(world)).outs
    world.log.clear()
    new = props(world, options=["noatime"])
    assert provider.diff("x", outs, new).replaces == []
    provider.update("x", outs, new)
    lines = world.changes
    assert "umount /mnt/cephfs" in lines and "mount /mnt/cephfs" in lines
    assert fstab(world).splitlines()[-1].endswith(",_netdev,defaults,noatime 0 0")


ASOK = "/var/run/ceph/ceph-client.cephfs-node1.{}.1.asok"


def test_a_remount_waits_for_the_unmounted_ceph_fuse_to_exit(world):
    """Unmounted, ceph-fuse still flushes and closes its session, holding the client's
    pidfile: a new one started meanwhile exits at once. The mount waits for it."""
    provider = CephFSMountProvider()
    outs = provider.create(props(world)).outs
    node = world.nodes["node1"]
    node.lingering[900] = [ASOK.format(900), 3]  # gone after three more looks
    provider.update("x", outs, props(world, options=["noatime"]))
    assert node.mounts == {"/mnt/cephfs": "fuse.ceph-fuse"}


def test_a_ceph_fuse_that_never_exits_fails_the_remount_by_name(world, monkeypatch):
    monkeypatch.setattr("providers.cephfs_mount.EXIT_TIMEOUT", 0)
    provider = CephFSMountProvider()
    outs = provider.create(props(world)).outs
    world.nodes["node1"].lingering[900] = [ASOK.format(900), None]
    with pytest.raises(Exception, match=r"node1: /mnt/cephfs: .*pid 900.* to exit.*up` again"):
        provider.update("x", outs, props(world, options=["noatime"]))
    assert "mount /mnt/cephfs" not in world.changes[-1:]


def test_mount_that_exits_zero_without_a_mount_is_a_failure_not_a_probe_in_the_directory(world):
    world.nodes["node1"].mount_exits_quietly = True
    with pytest.raises(Exception, match="exited 0 but nothing is mounted.*pidfile"):
        CephFSMountProvider().create(props(world))


def test_kernel_client_line_uses_a_secret_file_and_the_mons():
    line = fstab_line(
        {
            "cluster_name": "ceph",
            "client_id": "cephfs-node1",
            "fs_name": "cephfs",
            "mountpoint": "/mnt/cephfs",
            "client": "kernel",
            "mon_hosts": ["192.0.2.11:6789", "192.0.2.12:6789"],
        }
    )
    assert line == (
        "192.0.2.11,192.0.2.12:/ /mnt/cephfs ceph name=cephfs-node1,"
        "secretfile=/etc/ceph/ceph.client.cephfs-node1.secret,"
        "mds_namespace=cephfs,_netdev 0 0"
    )


def test_kernel_client_mount_writes_the_secret_file_0600(world):
    CephFSMountProvider().create(props(world, client="kernel"))
    node = world.nodes["node1"]
    assert node.mounts == {"/mnt/cephfs": "ceph"}
    assert node.modes["/etc/ceph/ceph.client.cephfs-node1.secret"] == ("600", "root:root")


def test_read_shows_an_unmounted_cephfs_and_update_mounts_it(world):
    provider = CephFSMountProvider()
    outs = provider.create(props(world)).outs
    world.nodes["node1"].mounts.clear()
    read = provider.read("x", outs).outs
    assert read["ensure"] == "unmounted" and provider.diff("x", read, props(world)).changes
    provider.update("x", read, props(world))
    assert world.nodes["node1"].mounts == {"/mnt/cephfs": "fuse.ceph-fuse"}


def test_a_dead_mount_still_listed_is_drift_and_up_remounts_it(world):
    """An evicted ceph-fuse client: /proc/mounts lists it, every access fails."""
    provider = CephFSMountProvider()
    outs = provider.create(props(world)).outs
    node = world.nodes["node1"]
    node.dead.add("/mnt/cephfs")
    read = provider.read("x", outs).outs
    assert read["ensure"] == "unmounted" and provider.diff("x", read, props(world)).changes
    provider.update("x", read, props(world))
    lines = [c.line for c in world.log if c.node == "node1" and c.change]
    assert "umount -l /mnt/cephfs" in lines and "mount /mnt/cephfs" in lines
    assert node.mounts == {"/mnt/cephfs": "fuse.ceph-fuse"} and not node.dead
    assert provider.read("x", outs).outs["ensure"] == "mounted"


@pytest.mark.parametrize("knows", [True, False], ids=["client-knows", "client-unaware"])
def test_an_evicted_client_that_still_answers_is_drift_and_up_ends_it(world, knows):
    """Blocklisted by the cluster after a partition, ceph-fuse serves stat and even writes
    from its cache. Right after the link heals the client may not have seen the OSD map that
    blocklists it (its own status says it is fine): the cluster's blocklist decides."""
    provider = CephFSMountProvider()
    outs = provider.create(props(world)).outs
    node = world.nodes["node1"]
    node.fenced[4242] = "/var/run/ceph/ceph-client.cephfs-node1.4242.9412.asok"
    node.fenced[77] = "/var/run/ceph/ceph-client.other-node1.77.1.asok"  # not this mount's
    if not knows:
        node.unaware |= {4242, 77}
    read = provider.read("x", outs).outs
    assert read["ensure"] == "unmounted" and provider.diff("x", read, props(world)).changes
    provider.update("x", read, props(world))
    lines = [c.line for c in world.log if c.node == "node1" and c.change]
    assert "umount -l /mnt/cephfs" in lines and "kill -9 4242" in lines
    assert list(node.fenced) == [77] and provider.read("x", outs).outs["ensure"] == "mounted"


def test_delete_refuses_while_busy_unless_forced(world):
    provider = CephFSMountProvider()
    outs = provider.create(props(world)).outs
    world.nodes["node1"].busy.add("/mnt/cephfs")
    with pytest.raises(Exception, match="busy.*force_unmount"):
        provider.delete("x", outs)
    assert "/mnt/cephfs" in world.nodes["node1"].mounts and LINE in fstab(world)
    provider.delete("x", {**outs, "force_unmount": True})
    assert world.nodes["node1"].mounts == {} and "/mnt/cephfs" not in fstab(world)
    assert "client.cephfs-node1" not in world.auth


@pytest.mark.parametrize(
    "change, replaces",
    [
        ({}, None),
        ({"options": ["noatime"]}, []),
        ({"client": "kernel"}, []),
        ({"mountpoint": "/srv/fs"}, ["mountpoint"]),
        ({"node": "node2"}, ["node"]),
        ({"fs_name": "other"}, ["fs_name"]),
    ],
)
def test_diff_table(world, change, replaces):
    old = {**props(world), "client_key": "k", "fstab_line": LINE}
    result = CephFSMountProvider().diff("x", old, {**props(world), **change})
    assert result.changes == (replaces is not None)
    assert result.replaces == (replaces or [])


def test_check_names_the_field(world):
    failures = {
        f.property
        for f in CephFSMountProvider()
        .check({}, {**props(world), "mountpoint": "mnt", "client": "nfs", "options": ["a,b"]})
        .failures
    }
    assert failures == {"mountpoint", "client", "options[0]"}


def test_a_mountpoint_that_is_already_another_mount_is_refused(world):
    node = world.nodes["node1"]
    node.mounts["/mnt/cephfs"] = "ext4"  # someone else's filesystem
    world.log.clear()
    with pytest.raises(Exception, match="already a ext4 mount.*refusing to unmount"):
        CephFSMountProvider().create(props(world))
    assert node.mounts == {"/mnt/cephfs": "ext4"}
    assert world.changes == []


def test_fstab_is_replaced_from_a_temp_file_of_its_own_with_a_backup(world):
    CephFSMountProvider().create(props(world))
    node = world.nodes["node1"]
    script = next(line for line in world.log.lines if "mktemp /etc/.fstab" in line)
    assert "mv -f" in script and "sync" in script, "atomic where it can be"
    assert node.files["/etc/fstab.cephkvm.bak"] == "# fstab\n"


def test_an_fstab_line_for_the_mountpoint_that_is_not_ours_is_left_alone(world):
    node = world.nodes["node1"]
    node.files["/etc/fstab"] = "# fstab\n/dev/sdz1 /mnt/cephfs ext4 defaults 0 2\n"
    with pytest.raises(Exception, match="cephkvm did not write.*refusing to touch it"):
        CephFSMountProvider().create(props(world))
    assert node.files["/etc/fstab"] == "# fstab\n/dev/sdz1 /mnt/cephfs ext4 defaults 0 2\n"


def test_an_unreadable_fstab_is_an_error_not_an_empty_file(world):
    node = world.nodes["node1"]
    node.unreadable = {"/etc/fstab"}
    with pytest.raises(Exception, match="cat -- /etc/fstab"):
        CephFSMountProvider().create(props(world))
    assert node.files["/etc/fstab"] == "# fstab\n"
