"""Benchmark: preview time of the full runbook layout as it grows (3 to 50 nodes, 10 to 500
VMs), with no host reachable (an empty network namespace when run as root): the plan of a
first `up` (a new stack) and, with --unchanged, the preview of a stack whose resources all
exist (a state made by tests/engine/synthetic.py). Either must open no SSH connection.
Prints figures; asserts nothing. Usage: bench/preview_offline_scale.py [--unchanged]
[--ab=drain|graph|debug|engine-log] [--code=DIR] [NODES:VMS ...]

--ab=NAME: A B A B rounds, A with the SDK's own code or the engine's default in place of
one of ours (B): `drain` components/sdk_drain.py, `graph` components/sdk_graph.py, `debug`
components/sdk_log.py, `engine-log` the engine's automatic log, which scripts/setup-tools.sh
turns off (A runs with a PULUMI_HOME of its own, where the engine writes it). --ab-drain is
--ab=drain."""

import os
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.cli import ROOT, Project  # noqa: E402
from tests.engine import synthetic  # noqa: E402

SIZES = [(3, 10), (10, 50), (25, 200), (50, 500)]


def stack_config(nodes: int, vms: int) -> dict:
    with open(os.path.join(ROOT, "stacks", "Pulumi.example.yaml")) as f:
        config = yaml.safe_load(f)["config"]
    template = config["cephkvm:nodes"][0]
    config["cephkvm:nodes"] = [
        {**template, "name": f"osd{i}", "address": f"10.20.{i // 200}.{i % 200 + 10}"}
        for i in range(1, nodes + 1)
    ]
    bridge = config["cephkvm:bridges"][0]
    bridge["addresses"] = {n["name"]: [f"{n['address']}/16"] for n in config["cephkvm:nodes"]}
    bridge["gateway"] = "10.20.0.1"
    vm = config.pop("cephkvm:vms")[0]
    # The VM list goes in cephkvm:vms_file: stack config is capped at 128 KiB in all.
    config["cephkvm:vms_file"] = "vms.yaml"
    fleet = [
        {
            **vm,
            "name": f"virt-{i:03d}",
            "node": f"osd{i % nodes + 1}",
            "cloud_init": {**vm["cloud_init"], "hostname": f"virt-{i:03d}"},
        }
        for i in range(vms)
    ]
    return {"config": config}, fleet


def stock(name: str, tmp: str) -> dict:
    """The environment of an A round of --ab=name."""
    if name == "engine-log":
        return {"PULUMI_HOME": os.path.join(tmp, "pulumi-home")}
    return {f"CEPHKVM_SDK_{name.upper()}": "stock"}


def measure(nodes: int, vms: int, unchanged: bool, ab: str = "", code: str = ROOT) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp, "scale", code=code)
        config, fleet = stack_config(nodes, vms)
        with open(os.path.join(project.dir, "stacks", "Pulumi.scale.yaml"), "w") as f:
            yaml.safe_dump(config, f)
        with open(os.path.join(project.dir, "vms.yaml"), "w") as f:
            yaml.safe_dump(fleet, f)
        if unchanged:
            synthetic.settle(project)
            print(f"{nodes:3d} nodes {vms:4d} VMs  state {_state_bytes(project) / 1e6:.2f} MB")
        kind = "unchanged" if unchanged else "new"
        for label in ("A", "B", "A", "B") if ab else ("",):
            elapsed, proc = _preview(project, stock(ab, tmp) if label == "A" else {})
            if proc.returncode:
                reason = [line.strip() for line in proc.stdout.splitlines() if "error:" in line]
                print(f"{nodes:3d} nodes {vms:4d} VMs  preview FAILED: {reason[-1:]}")
                return
            connects = sum(line.startswith("connect ") for line in project.ssh_log_lines())
            print(
                f"{nodes:3d} nodes {vms:4d} VMs  {kind} preview {label} {elapsed:6.1f} s  "
                f"ssh connections {connects}",
                flush=True,
            )


def _state_bytes(project: Project) -> int:
    """The size of the stack's exported state (what grows with nodes and VMs)."""
    return len(project.run("stack", "export", "--stack", project.stack).stdout)


def _preview(project: Project, env: dict):
    start = time.monotonic()
    proc = project.run("preview", netns_isolated=os.geteuid() == 0, check=False, env=env)
    return time.monotonic() - start, proc


def main() -> None:
    args = sys.argv[1:]
    flags = {a for a in args if a.startswith("--")}
    sizes = [tuple(map(int, a.split(":"))) for a in args if a not in flags] or SIZES
    # --code=DIR: the project's code from DIR (a `git worktree` of another commit), to set
    # this tree's figures against another's in the same run
    code = next((a.split("=", 1)[1] for a in flags if a.startswith("--code=")), ROOT)
    ab = next((a.split("=", 1)[1] for a in flags if a.startswith("--ab=")), "")
    ab = "drain" if "--ab-drain" in flags else ab
    for nodes, vms in sizes:
        measure(nodes, vms, "--unchanged" in flags, ab, code)


if __name__ == "__main__":
    main()
