"""Killing `pulumi up` in the middle of the Ceph bootstrap, then running it again, converges:
the same fsid, one copy of each daemon per node, HEALTH_OK."""

import os
import signal
import subprocess
import time

import pytest

import lab
from tests.cli import Project
from tests.lab.clean import assert_left_clean
from tests.lab.test_ceph_lab import NODES, ceph, ceph_only, sh

pytestmark = pytest.mark.lab
if os.geteuid() != 0 or not lab.inventory():
    pytest.skip("needs root and a running lab (make test brings it up)", allow_module_level=True)

DAEMONS = ("ceph-mon", "ceph-mgr", "ceph-mds", "ceph-osd")
# Processes of this node only: the PID namespace is shared, the mount namespace is not.
OWN_PROCESSES = (
    'for p in /proc/[0-9]*; do [ "$(readlink $p/ns/mnt)" = '
    '"$(readlink /proc/self/ns/mnt)" ] && cat $p/comm; done 2>/dev/null; true'
)


def daemons(node: str) -> list:
    return sorted(c for c in sh(node, OWN_PROCESSES).split() if c in DAEMONS)


# When to kill the run: a probe that turns true at that moment of the bring-up.
MOMENTS = {
    "first mon made": lambda: (
        lab.run("node1", "test -e /var/lib/ceph/mon/ceph-node1/done").returncode == 0
    ),
    # ceph-volume prepare writes the OSD's label and mkfs's BlueStore for seconds: looked
    # for from the host (the PID namespace is shared), as a walk of each node's /proc takes
    # about as long and missed it.
    "inside OSD prepare": lambda: (
        subprocess.run(["pgrep", "-x", "ceph-volume"], capture_output=True).returncode == 0
    ),
}


def fsid_on(node: str) -> str:
    return lab.run(node, "cat /var/lib/ceph/cephkvm/ceph.fsid").stdout.strip()


def processes(project, pattern: str) -> list:
    """(pid, command line) of processes matching pattern started for this project's runs."""
    out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
    mine = []
    for line in out.splitlines():
        pid = line.split()[0]
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(project.dir):
                mine.append((int(pid), line))
        except OSError:
            pass
    return mine


def provider_processes(project) -> list:
    return processes(project, "pulumi.dynamic")


def stop_language_hosts(project) -> None:
    """Pulumi's own language host (a Go binary, not ours to change) outlives a killed CLI;
    the test stops what its kill left, so nothing keeps running after it."""
    for pid, _ in processes(project, "pulumi-language-python"):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def wait_for(probe, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def project(tmp_path):
    project = Project(str(tmp_path), "lab")

    def own(cfg):
        ceph_only(cfg)
        cfg["cephkvm:ceph"]["allow_data_loss"] = True
        for p in cfg["cephkvm:pools"] + cfg["cephkvm:filesystems"]:
            p["allow_delete"] = True

    project.edit_config(own)
    yield project
    stop_language_hosts(project)
    project.recover()  # a test that failed before its own recover left pending creates
    gone = project.run("destroy", "--yes", "--skip-preview", check=False)
    # Nothing left, not even a daemon (OSDs go while a mgr still runs); else the lab is
    # rebuilt so the other case does not start on this one's leftovers.
    assert_left_clean(f"the crash test's destroy (exit {gone.returncode})")
    assert gone.returncode == 0, gone.stdout[-3000:]


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_killed_up_during_bootstrap_converges_on_rerun(project, moment):
    proc = subprocess.Popen(
        ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive", "--stack", "lab"],
        cwd=project.dir,
        env=project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        made = wait_for(MOMENTS[moment], timeout=300)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert made, f"the bring-up never reached the moment: {moment}"
    first_fsid = fsid_on("node1")
    # The killed run's provider process ends by itself once its engine is gone.
    assert wait_for(lambda: not provider_processes(project), timeout=30), provider_processes(
        project
    )
    stop_language_hosts(project)
    project.recover()  # the one documented command
    project.run("up", "--yes", "--skip-preview")
    status = ceph("status")
    assert status["fsid"] == first_fsid and status["health"]["status"] == "HEALTH_OK"
    for node in NODES:
        assert daemons(node) == sorted(DAEMONS), f"{node}: {daemons(node)}"
    osds = [n for n in ceph("osd tree")["nodes"] if n["type"] == "osd"]
    assert len(osds) == len(NODES) and all(o["status"] == "up" for o in osds), osds
    project.run("preview", "--expect-no-changes")
