"""Benchmark: entering and leaving maintenance for node1 with 1 and with 3 VMs on it, each
as a ratio to moving the same VMs by editing their `node` (plain live migrations, measured
in the same run), and the longest stall of a CephFS write+read probe on node3 meanwhile.
Prints figures; asserts nothing. Needs a running lab (`python -m lab up`) and the lab guest
image (`make guest-image`)."""

import copy
import ipaddress
import os
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lab  # noqa: E402
from tests.cli import Project  # noqa: E402

PROBE = """
import os, time
path, stop, worst = '/mnt/cephfs/bench-probe', '/tmp/cephkvm-bench.stop', 0.0
while not os.path.exists(stop):
    t0 = time.monotonic()
    with open(path, 'w') as f:
        f.write('x'); f.flush(); os.fsync(f.fileno())
    open(path).read()
    worst = max(worst, time.monotonic() - t0)
    time.sleep(0.2)
print(worst)
"""


def vms(config: dict, count: int) -> None:
    """count copies of the lab VM on node1, each with its own address."""
    first = config["cephkvm:vms"][0]
    net = ipaddress.ip_network(lab.inventory()["public_network"])
    config["cephkvm:vms"] = []
    for i in range(count):
        vm = copy.deepcopy(first)
        vm.update(name=f"bench-vm{i + 1}", node="node1")
        vm["cloud_init"]["hostname"] = vm["name"]
        vm["cloud_init"]["network_config"]["ethernets"]["eth0"]["addresses"] = [
            f"{net.network_address + 110 + i}/{net.prefixlen}"
        ]
        config["cephkvm:vms"].append(vm)


def timed_up(project: Project, change) -> tuple[float, float]:
    """(seconds of the `up` after change(config), the probe's longest stall meanwhile)."""
    project.edit_config(change)
    lab.run("node3", ["rm", "-f", "/tmp/cephkvm-bench.stop"])
    probe = subprocess.Popen(
        lab.ssh_argv("node3") + ["python3", "-c", shlex.quote(PROBE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    try:
        project.run("up", "--yes", "--skip-preview")
        return time.monotonic() - t0, _stall(probe)
    except BaseException:
        _stall(probe)
        raise


def _stall(probe: subprocess.Popen) -> float:
    lab.run("node3", ["touch", "/tmp/cephkvm-bench.stop"])
    out, _ = probe.communicate(timeout=60)
    return float(out.strip() or "nan")


def _on(node: str):
    return lambda c: [v.update(node=node) for v in c["cephkvm:vms"]]


def measure(project: Project, count: int) -> None:
    project.edit_config(lambda c: vms(c, count))
    project.run("up", "--yes", "--skip-preview")
    took = {
        label: timed_up(project, change)
        for label, change in (
            ("plain migration away", _on("node2")),
            ("plain migration back", _on("node1")),
            ("enter maintenance", lambda c: c.update({"cephkvm:maintenance": ["node1"]})),
            ("leave maintenance", lambda c: c.pop("cephkvm:maintenance")),
        )
    }
    for label, (seconds, stall) in took.items():
        print(f"{count} VM(s)  {label:22s} {seconds:6.1f} s   longest CephFS stall {stall:5.2f} s")
    reference = took["plain migration away"][0] + took["plain migration back"][0]
    both = took["enter maintenance"][0] + took["leave maintenance"][0]
    print(f"{count} VM(s)  maintenance in+out / plain migrations away+back: {both / reference:.2f}")


def main() -> None:
    if not lab.inventory():
        sys.exit("the lab is down: run `python -m lab up` first")
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp, "lab")
        try:
            for count in (1, 3):
                measure(project, count)
        finally:
            project.run("destroy", "--yes", "--skip-preview", check=False)


if __name__ == "__main__":
    main()
