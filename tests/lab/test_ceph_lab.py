"""Ceph on the lab through the real engine, with a configuration of its own (an erasure-coded
extra data pool, an rbd pool, no opt-in to destroy): outcomes are read from the nodes."""

import json
import os
import re
import subprocess
import threading
import time

import pytest

import lab
from lab import const as lab_const
from tests.cli import Project

pytestmark = pytest.mark.lab
if os.geteuid() != 0 or not lab.inventory():
    pytest.skip("needs root and a running lab (make test brings it up)", allow_module_level=True)

NODES = [n["name"] for n in lab.inventory()["nodes"]]
MNT = "/mnt/cephfs"


def sh(node: str, cmd: str) -> str:
    proc = lab.run(node, cmd, timeout=120)
    assert proc.returncode == 0, f"{node}: {cmd}: {proc.stderr}"
    return proc.stdout


def ceph(cmd: str, node: str = "node1"):
    return json.loads(sh(node, f"ceph {cmd} -f json"))


def lab_run_host(argv: list, check=True) -> str:
    """A command on the machine the lab runs on (loop devices are shared with the nodes)."""
    return subprocess.run(argv, check=check, capture_output=True, text=True).stdout


def pool(name: str) -> dict:
    return next(p for p in ceph("osd pool ls detail") if p["pool_name"] == name)


def pools_cfg(cfg: dict) -> dict:
    return {p["name"]: p for p in cfg["cephkvm:pools"]}


def ceph_only(cfg: dict) -> None:
    """This test's own configuration: Ceph without the KVM part, no opt-in to delete."""
    for k in [
        k
        for k in cfg
        if k.split(":", 1)[1] in ("bridges", "vms", "vm_storage", "vm_storage_shared")
    ]:
        del cfg[k]
    cfg["cephkvm:ceph"]["allow_data_loss"] = False
    cfg["cephkvm:pools"] = [
        {"name": "cephfs_meta", "size": 3, "min_size": 2, "pg_num": 16, "application": "cephfs"},
        {"name": "cephfs_data", "size": 3, "min_size": 2, "pg_num": 16, "application": "cephfs"},
        {
            "name": "ec_data",
            "erasure": {"k": 2, "m": 1, "allow_ec_overwrites": True},
            "pg_num": 8,
            "application": "cephfs",
        },
        {"name": "rbd_test", "size": 3, "min_size": 2, "pg_num": 8, "application": "rgw"},
    ]
    cfg["cephkvm:filesystems"] = [
        {
            "name": "cephfs",
            "metadata_pool": "cephfs_meta",
            "data_pool": "cephfs_data",
            "extra_data_pools": ["ec_data"],
            "layouts": {"/archive": "ec_data"},
            "standby_count": 1,
        }
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    project = Project(str(tmp_path_factory.mktemp("ceph")), "lab")
    project.edit_config(ceph_only)
    start = time.monotonic()
    project.run("up", "--yes", "--skip-preview")
    project.bring_up_seconds = time.monotonic() - start
    yield project

    # Leave the lab as we found it: opt in, then destroy everything.
    def opt_in(cfg):
        cfg["cephkvm:ceph"]["allow_data_loss"] = True
        for p in cfg["cephkvm:pools"] + cfg["cephkvm:filesystems"]:
            p["allow_delete"] = True

    project.edit_config(opt_in)
    opted = project.run("up", "--yes", "--skip-preview", check=False)
    gone = project.run("destroy", "--yes", "--skip-preview", check=False)
    assert gone.returncode == 0, (
        f"destroy: {gone.stdout[-3000:]}\nthe opt-in up before it: {opted.stdout[-3000:]}"
    )
    for node in NODES:
        left = sh(
            node,
            "find /var/lib/ceph/mon /var/lib/ceph/mgr /var/lib/ceph/mds "
            "/var/lib/ceph/osd -mindepth 1 -maxdepth 1",
        )
        assert not left.split(), f"{node}: a daemon's data is left: {left}"


def test_cluster_is_healthy_with_quorum_osds_and_mds(stack):
    print(f"bring-up through pulumi up: {stack.bring_up_seconds:.0f}s")
    status = ceph("status")
    assert status["health"]["status"] == "HEALTH_OK", status["health"]
    assert sorted(status["quorum_names"]) == NODES
    tree = ceph("osd tree")
    hosts = {n["name"]: n["children"] for n in tree["nodes"] if n["type"] == "host"}
    osds = [n for n in tree["nodes"] if n["type"] == "osd"]
    assert sorted(hosts) == NODES and all(len(c) == 1 for c in hosts.values())
    assert len(osds) == 3 and all(o["status"] == "up" and o["reweight"] > 0 for o in osds)
    fs = ceph("fs dump")
    states = [i["state"] for i in fs["filesystems"][0]["mdsmap"]["info"].values()]
    assert states == ["up:active"] and len(fs["standbys"]) >= 1
    assert stack.outputs()["ceph"]["fsid"] == status["fsid"]


def test_the_first_mons_met_with_a_short_election_timeout_and_run_with_cephs_own(stack):
    """providers/mon_election.py: each first mon's helper set 1 s through the admin socket
    and took it away once the mons met; nothing of it is left in the running mons."""

    def running_value(node):
        out = sh(node, f"ceph daemon mon.{node} config get mon_election_timeout")
        return float(json.loads(out)["mon_election_timeout"])

    for node in NODES:
        log = sh(node, f"cat /run/cephkvm/ceph-mon.{node}-first-election.log")
        assert "mon_election_timeout = '1.000000'" in log, f"{node}: the helper said: {log}"
        assert poll(lambda: running_value(node) == 5.0, timeout=30), running_value(node)


def test_the_lighter_cli_answers_as_the_cli_does(stack):
    """providers/ceph_lite.py: the same output, errors and exit codes as `ceph`, for reads,
    JSON, a missing entity, a command with missing arguments, an unknown one, `-o`, and a
    `tell` it leaves to the CLI. (The bring-up's reads of PG states and health go through
    it in every lab test; their answers change between two calls, so not compared here.)"""
    from providers.ceph_cli import LITE

    commands = [  # answers that stay the same from one call to the next
        "mon dump -f json",
        "osd pool ls detail -f json",
        "mgr module ls -f json",
        "auth get client.nobody -f json",
        "osd pool create",
        "osd pool frobnicate cephfs_meta",
        "mon getmap -o /tmp/cephkvm-lite-monmap",
        "tell mon.node1 version",
        "osd pool get cephfs_meta size",
    ]
    for command in commands:
        answers = []
        for how in ("ceph", "python3 - ceph"):
            proc = lab.run("node1", f"{how} --cluster ceph {command}", input=LITE, timeout=60)
            made = sh("node1", "base64 -w0 /tmp/cephkvm-lite-monmap 2>/dev/null; true")
            sh("node1", "rm -f /tmp/cephkvm-lite-monmap")
            answers.append((proc.returncode, proc.stdout, proc.stderr, made))
        assert answers[0] == answers[1], command
    assert answers[0][0] == 0 and answers[0][1].strip() == "size: 3"


def test_cephfs_is_mounted_everywhere_through_fstab_and_shared(stack):
    for node in NODES:
        mounts = [ln.split() for ln in sh(node, "cat /proc/self/mounts").splitlines()]
        assert [m[2] for m in mounts if m[1] == MNT] == ["fuse.ceph-fuse"], node
        lines = [ln for ln in sh(node, "cat /etc/fstab").splitlines() if f" {MNT} " in ln]
        assert lines == [
            f"none {MNT} fuse.ceph ceph.id=cephfs-{node},ceph.client_fs=cephfs,_netdev,defaults 0 0"
        ], lines
        assert sh(node, f"stat -c %a /etc/ceph/ceph.client.cephfs-{node}.keyring").strip() == "600"
    token = f"written on node1 at {time.time()}"
    sh("node1", f"echo '{token}' > {MNT}/from-node1.txt")
    assert sh("node3", f"cat {MNT}/from-node1.txt").strip() == token
    layout = sh(
        "node2",
        '/usr/bin/python3 -c "import os; print(os.getxattr('
        f"'{MNT}/archive', 'ceph.dir.layout.pool').decode())\"",
    ).strip()
    assert layout == "ec_data"
    sh("node2", f"dd if=/dev/zero of={MNT}/archive/blob bs=64k count=16 2>/dev/null && sync")
    assert poll(
        lambda: (
            next(p for p in ceph("df")["pools"] if p["name"] == "ec_data")["stats"]["objects"] > 0
        ),
        timeout=30,
    ), "files under /archive land in the EC pool"
    caps = ceph("auth get client.cephfs-node2")[0]["caps"]
    assert "fsname=cephfs" in caps["mds"] and "allow *" not in caps.values()


def test_outputs_keep_client_keys_secret(stack):
    out = stack.outputs()
    assert out["ceph_client_keys"] == "[secret]" and "client_keys" not in out["ceph"]
    ceph = out["ceph"]
    assert ceph["csi"]["clusterID"] == ceph["fsid"] and len(ceph["csi"]["monitors"]) == 3
    keys = stack.outputs(show_secrets=True)["ceph_client_keys"]
    assert keys and all(k not in stack.state_text() for k in keys.values())


def test_no_changes_after_up_and_noop_up_changes_nothing(stack):
    stack.run("preview", "--expect-no-changes")
    open(stack.ssh_log, "w").close()
    stack.run("up", "--yes", "--skip-preview", "--refresh")
    changes = [ln for ln in stack.ssh_log_lines() if ln.startswith("change ")]
    assert not changes, changes


def test_cluster_option_change_is_an_update_of_the_config_alone(stack):
    def change(cfg):
        cfg["cephkvm:ceph"]["options"]["mon"]["mon_data_avail_warn"] = 3

    stack.edit_config(change)
    preview = stack.preview_json()
    ops = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in preview["steps"] if s["op"] != "same"}
    assert ops == {"ceph-config": "update"}, ops
    stack.run("up", "--yes", "--skip-preview")
    assert sh("node3", "ceph config get mon mon_data_avail_warn").strip() == "3"


def test_pool_size_pg_num_application_update_in_place(stack):
    def change(cfg):
        pools_cfg(cfg)["rbd_test"].update(size=2, min_size=1, pg_num=16, application="rbd")

    stack.edit_config(change)
    preview = stack.preview_json()
    ops = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in preview["steps"] if s["op"] != "same"}
    assert ops == {"pool-rbd_test": "update"}, ops
    stack.run("up", "--yes", "--skip-preview")
    p = pool("rbd_test")
    assert (p["size"], p["min_size"], p["pg_num_target"]) == (2, 1, 16)
    assert list(p["application_metadata"]) == ["rbd"]


def test_refresh_shows_hand_resized_pool_and_up_restores_it(stack):
    sh("node2", "ceph osd pool set cephfs_data size 2")
    stack.run("refresh", "--yes", "--skip-preview")
    preview = stack.preview_json()
    ops = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in preview["steps"] if s["op"] != "same"}
    assert ops == {"pool-cephfs_data": "update"}, ops
    stack.run("up", "--yes", "--skip-preview")
    assert pool("cephfs_data")["size"] == 3


def test_type_change_is_a_replace_refused_at_preview_without_opt_in(stack):
    def change(cfg):
        pools_cfg(cfg)["rbd_test"].update(erasure={"k": 2, "m": 1})
        for k in ("size", "min_size"):
            pools_cfg(cfg)["rbd_test"].pop(k)

    stack.edit_config(change)
    for command in (["preview"], ["up", "--yes"]):
        proc = stack.run(*command, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "protect" in out and "pool-rbd_test" in out, out[-3000:]
    assert pool("rbd_test")["type"] == 1  # still the replicated pool

    def back(cfg):
        pools_cfg(cfg)["rbd_test"].pop("erasure")
        pools_cfg(cfg)["rbd_test"].update(size=2, min_size=1)

    stack.edit_config(back)


def poll(probe, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(1)
    return False


def test_killed_mon_and_active_mds_leave_cephfs_usable_and_up_restores_them(stack):
    fs = ceph("fs dump")["filesystems"][0]["mdsmap"]["info"]
    active = next(i["name"] for i in fs.values() if i["state"] == "up:active")
    mon = next(n for n in NODES if n != "node1")
    sh(mon, f"kill $(cat /run/ceph/ceph-mon.{mon}.pid)")
    sh(active, f"kill $(cat /run/ceph/ceph-mds.{active}.pid)")
    assert poll(lambda: mon not in ceph("quorum_status")["quorum_names"])

    def failed_over():
        info = ceph("fs dump")["filesystems"][0]["mdsmap"]["info"].values()
        states = {i["name"]: i["state"] for i in info}
        return active not in states and "up:active" in states.values()

    # Measured here: the mons take 60-90 s to replace an MDS killed together with a mon.
    assert poll(failed_over, timeout=180)
    token = f"after the kill {time.time()}"
    sh("node1", f"echo '{token}' > {MNT}/after-kill.txt")
    assert sh("node3", f"cat {MNT}/after-kill.txt").strip() == token
    stack.run("up", "--yes", "--skip-preview", "--refresh")
    assert sorted(ceph("quorum_status")["quorum_names"]) == NODES
    dump = ceph("fs dump")
    names = [s["name"] for s in dump["standbys"]] + [
        i["name"] for i in dump["filesystems"][0]["mdsmap"]["info"].values()
    ]
    assert sorted(names) == NODES


def set_roles(project: Project, node: str, roles) -> None:
    """Roles of a lab node, in the project's own copy of the inventory (None: all)."""
    path = os.path.join(project.dir, ".lab" + os.environ.get("CEPHKVM_LAB", ""), "inventory.json")
    with open(path) as f:
        inv = json.load(f)
    entry = next(n for n in inv["nodes"] if n["name"] == node)
    entry.pop("roles", None)
    if roles is not None:
        entry["roles"] = roles
    with open(path, "w") as f:
        json.dump(inv, f)


def test_a_mon_taken_away_leaves_the_monmap_and_joins_again_when_given_back(stack):
    set_roles(stack, "node3", ["mgr", "mds", "osd", "kvm"])
    preview = stack.preview_json()
    ops = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in preview["steps"] if s["op"] != "same"}
    assert ops.get("mon-node3") == "delete" and ops.get("ceph-cluster") == "update", ops
    stack.run("up", "--yes", "--skip-preview")
    assert sorted(m["name"] for m in ceph("mon dump")["mons"]) == ["node1", "node2"]
    assert sorted(ceph("quorum_status")["quorum_names"]) == ["node1", "node2"]
    assert lab.run("node3", "test -e /var/lib/ceph/mon/ceph-node3").returncode != 0
    set_roles(stack, "node3", None)
    stack.run("up", "--yes", "--skip-preview")  # node3 joins with `ceph mon getmap`
    assert sorted(m["name"] for m in ceph("mon dump")["mons"]) == NODES
    assert sorted(ceph("quorum_status")["quorum_names"]) == NODES
    stack.run("preview", "--expect-no-changes")


def node_snapshot(node: str) -> dict:
    """What a destroy must not touch: mounts, running daemons, Ceph's files."""
    return {
        "mounts": sh(node, "findmnt -rn -o TARGET,FSTYPE | grep -i ceph || true"),
        "daemons": sh(node, "ls /run/ceph/ | grep '\\.pid$' || true"),
        "files": sh(
            node,
            "find /etc/ceph /var/lib/ceph/cephkvm /var/lib/ceph/mon "
            "/var/lib/ceph/osd -maxdepth 1 | sort",
        ),
        "fstab": sh(node, "cat /etc/fstab"),
    }


def test_destroy_without_opt_in_is_refused_before_any_host_is_touched(stack):
    before = {n: node_snapshot(n) for n in NODES}
    proc = stack.run("destroy", "--yes", "--skip-preview", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "protect" in out and "destroy-needs-ceph.allow_data_loss" in out, out[-3000:]
    deleting = [line for line in out.splitlines() if re.search(r" (deleting|deleted) \(", line)]
    assert all("DestroyGuard" in line for line in deleting), deleting
    assert {n: node_snapshot(n) for n in NODES} == before
    assert ceph("status")["health"]["status"] in ("HEALTH_OK", "HEALTH_WARN")
    assert len(ceph("osd tree")["stray"]) == 0 and sorted(ceph("status")["quorum_names"]) == NODES
    token = f"after the refused destroy {time.time()}"
    sh("node1", f"echo '{token}' > {MNT}/after-destroy.txt")
    assert sh("node3", f"cat {MNT}/after-destroy.txt").strip() == token


def test_identity_files_deleted_on_every_mon_are_written_back_with_the_same_identity(stack):
    fsid = ceph("fsid")["fsid"]
    key = sh("node1", "ceph auth get-key client.admin").strip()
    for node in NODES:
        sh(node, "rm -rf /var/lib/ceph/cephkvm")
    stack.run("up", "--yes", "--skip-preview", "--refresh")
    for node in NODES:
        assert sh(node, "cat /var/lib/ceph/cephkvm/ceph.fsid").strip() == fsid
        assert f"key = {key}" in sh(node, "cat /var/lib/ceph/cephkvm/ceph.bootstrap.keyring")
        assert f"fsid = {fsid}" in sh(node, "cat /etc/ceph/ceph.conf")
    assert ceph("fsid")["fsid"] == fsid and sorted(ceph("quorum_status")["quorum_names"]) == NODES
    stack.run("preview", "--expect-no-changes")


def osds() -> list:
    return [n for n in ceph("osd tree")["nodes"] if n["type"] == "osd"]


def pg_summary(doc: dict) -> dict:
    """`ceph pg stat -f json`: the summary is the document itself on Pacific."""
    return doc.get("pg_summary", doc)


def _pg_watch(stop: threading.Event, seen: list) -> None:
    """Every PG state and degraded count `ceph pg stat` shows until stop is set."""
    while not stop.is_set():
        proc = lab.run("node2", "ceph pg stat -f json", timeout=30)
        if proc.returncode == 0:
            seen.append(pg_summary(json.loads(proc.stdout)))
        time.sleep(0.5)


def _set_disks(project: Project, node: str, disks: list) -> None:
    path = os.path.join(project.dir, ".lab" + os.environ.get("CEPHKVM_LAB", ""), "inventory.json")
    with open(path) as f:
        inv = json.load(f)
    next(n for n in inv["nodes"] if n["name"] == node)["disks"] = disks
    with open(path, "w") as f:
        json.dump(inv, f)


def test_osd_removal_drains_before_the_purge_and_nothing_is_lost(stack):
    image = lab_const.node_dir("node1") / "disks" / "extra.img"
    with open(image, "wb") as f:
        f.truncate(10 << 30)
    dev = lab_run_host(["losetup", "--find", "--show", str(image)]).strip()
    own = lab.inventory()["nodes"][0]["disks"]
    try:
        stack.edit_config(lambda c: c["cephkvm:ceph"].update(allow_osd_removal=True))
        _set_disks(stack, "node1", own + [dev])
        stack.run("up", "--yes", "--skip-preview")
        assert len(osds()) == 4, "4 OSDs under 3 hosts"
        for i in range(40):
            sh("node1", f"head -c 65536 /dev/urandom > {MNT}/drain-{i}.bin")
        sums = sh("node1", f"cd {MNT} && sha256sum drain-*.bin")

        def clean():
            states = pg_summary(ceph("pg stat"))["num_pg_by_state"]
            return [s["name"] for s in states] == ["active+clean"]

        assert poll(clean, timeout=180)

        # The files' first objects, named by inode, listed by the OSDs themselves (`ceph df`
        # counts what they last reported, seconds late, so it cannot tell loss from lag).
        inodes = sh("node1", f"stat -c %i {MNT}/drain-*.bin").split()
        mine = {f"{int(i):x}.00000000" for i in inodes}

        def objects() -> set:
            return set(sh("node1", "rados -p cephfs_data ls").split()) & mine

        # ceph-fuse writes back from its cache: wait until every file reached the OSDs.
        assert poll(lambda: objects() == mine, timeout=120), sorted(mine - objects())
        _set_disks(stack, "node1", own)
        stop, seen = threading.Event(), []
        watcher = threading.Thread(target=_pg_watch, args=(stop, seen))
        watcher.start()
        try:
            stack.run("up", "--yes", "--skip-preview")
        finally:
            stop.set()
            watcher.join()
        # Young PGs keep their whole log, so the OSD taking a PG over is recovered from the
        # log inside the acting set: a few objects count as degraded for seconds while the
        # leaving OSD still holds its copy (docs/design.md, known gaps). No PG may go down
        # or stale, and the purge comes only once all is clean: the first look after is.
        bad = {
            st["name"]
            for s in seen
            for st in s["num_pg_by_state"]
            if any(w in st["name"] for w in ("down", "incomplete", "stale"))
        }
        print(
            f"pg stat samples during the removal: {len(seen)}; states seen: "
            f"{sorted({st['name'] for s in seen for st in s['num_pg_by_state']})}; "
            f"most degraded objects: {max(s.get('degraded_objects', 0) for s in seen)}"
        )
        assert len(seen) > 5 and not bad, bad
        after = pg_summary(ceph("pg stat"))
        assert [s["name"] for s in after["num_pg_by_state"]] == ["active+clean"], after
        assert not after.get("degraded_objects"), after
        assert len(osds()) == 3, "back to 3 OSDs"
        assert objects() == mine, sorted(mine - objects())
        assert sh("node3", f"cd {MNT} && sha256sum drain-*.bin") == sums
    finally:
        _set_disks(stack, "node1", own)
        lab_run_host(["losetup", "--detach", dev], check=False)
        image.unlink(missing_ok=True)
        sh("node1", f"rm -f {MNT}/drain-*.bin")


def _client_addr(node: str) -> str:
    """The address node's ceph-fuse client has in the MDS's session list."""
    for s in ceph("tell mds.cephfs:0 session ls"):
        if s.get("client_metadata", {}).get("hostname") == node:
            return s["inst"].split()[-1].split(":", 1)[-1]  # "client.N v1:ADDR:0/NONCE"
    raise AssertionError(f"no CephFS session from {node}")


def _blocklisted(addr: str) -> bool:
    """Pacific's `-f json` prints two arrays; the plain listing is one entry a line."""
    proc = lab.run("node1", "ceph osd blocklist ls", timeout=60)
    return proc.returncode == 0 and any(
        line.split()[0].endswith(addr) for line in proc.stdout.splitlines() if line.strip()
    )


def _mount_report(node: str) -> str:
    """What node's CephFS client looks like, for a failure message."""
    return lab.run(
        node,
        f"grep ' {MNT} ' /proc/self/mounts; pgrep -a ceph-fuse; "
        f"ls -la {MNT}; for a in /var/run/ceph/*client*.asok; do echo $a; "
        "timeout 10 ceph --admin-daemon $a status; done",
        timeout=60,
    ).stdout


def _node_lines(log: str, node: str) -> str:
    with open(log) as f:
        return "".join(line for line in f if f" {node} " in line)


def _sessions() -> str:
    """The MDS's client sessions, a line each, for a failure message."""
    return "\n".join(
        f"{s.get('client_metadata', {}).get('hostname')} {s.get('id')} "
        f"{s.get('state')} {s.get('inst')}"
        for s in ceph("tell mds.cephfs:0 session ls")
    )


def _answers(node: str) -> bool:
    try:
        return lab.run(node, "true", timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _link(node: str, state: str) -> None:
    lab_run_host(["ip", "link", "set", lab_const.veth(node), state])


def test_a_partition_longer_than_the_mds_session_converges_with_one_up(stack):
    """node3 cut off during an `up` that changes every node's mount: node1 and node2 are
    done and node3 is reported by name; the MDS evicts node3's client while the link is
    down; once it is back, one plain `up` heals the dead mount."""
    sh(
        "node1", "ceph fs set cephfs session_timeout 30 && ceph fs set cephfs session_autoclose 40"
    )  # evict in a minute, not five
    addr = _client_addr("node3")
    try:
        _link("node3", "down")
        stack.edit_config(lambda c: c["cephkvm:mounts"][0].update(options=["noatime"]))
        run = stack.run("up", "--yes", "--skip-preview", check=False)
        text = run.stdout + run.stderr
        assert run.returncode != 0 and "node3: cannot reach" in text, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        for node in ("node1", "node2"):
            assert "noatime" in sh(node, f"grep ' {MNT} ' /etc/fstab"), node
            assert "noatime" in sh(node, f"grep ' {MNT} ' /proc/self/mounts"), node
        assert poll(lambda: _blocklisted(addr), timeout=240), "node3's client was not evicted"
    finally:
        _link("node3", "up")
    assert poll(lambda: _answers("node3"), timeout=60)
    log = os.path.join(stack.dir, "heal-ssh.log")
    healed = stack.run("up", "--yes", "--skip-preview", env={"CEPHKVM_SSH_LOG": log})
    token = f"after the partition {time.time()}"
    sh("node3", f"echo '{token}' > {MNT}/after-partition.txt && sync {MNT}/after-partition.txt")
    seen = lab.run("node1", f"cat {MNT}/after-partition.txt", timeout=60)
    if seen.stdout.strip() != token:
        pytest.fail(
            f"node1 does not see node3's file: {seen.stderr}\n"
            f"--- up after the partition:\n{healed.stdout[-3000:]}\n"
            f"--- its commands on node3:\n{_node_lines(log, 'node3')}\n"
            + "".join(f"--- {n}:\n{_mount_report(n)}\n" for n in ("node3", "node1"))
            + f"--- sessions:\n{_sessions()}\n--- blocklist:\n"
            + lab.run("node1", "ceph osd blocklist ls", timeout=60).stdout
        )
    assert "noatime" in sh("node3", f"grep ' {MNT} ' /etc/fstab")
    assert poll(lambda: sorted(ceph("quorum_status")["quorum_names"]) == NODES, timeout=120)
    assert poll(lambda: ceph("status")["health"]["status"] == "HEALTH_OK", timeout=300), ceph(
        "health detail"
    )
    steps = stack.preview_json()["steps"]
    assert [s["op"] for s in steps if s["op"] != "same"] == [], "converged: nothing left to do"
    sh("node1", "ceph fs set cephfs session_timeout 60 && ceph fs set cephfs session_autoclose 300")
