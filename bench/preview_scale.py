"""Benchmark: how `pulumi up` and the preview of an unchanged stack grow with the node count.

N stack nodes are aliases of the 3 lab nodes (same addresses, distinct names), so the state
is real without any fake. Prints time, SSH connections and mutating commands; asserts
nothing. Needs a running lab and `make setup`. Usage: bench/preview_scale.py [N ...]"""

import os
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lab  # noqa: E402
from tests.cli import Project  # noqa: E402


def stack_config(count: int, inv: dict) -> dict:
    real = inv["nodes"]
    nodes = [
        {
            "name": f"n{i}",
            "address": real[i % len(real)]["address"],
            "host_key": real[i % len(real)]["host_key"],
        }
        for i in range(count)
    ]
    return {
        "config": {
            "cephkvm:nodes": nodes,
            "cephkvm:kvm": {"virt_type": "qemu"},
            "cephkvm:ssh": {
                "key_file": inv["ssh"]["key_file"],
                "known_hosts": inv["ssh"]["known_hosts"],
            },
        }
    }


def timed(project: Project, *args) -> tuple[float, int, int]:
    open(project.ssh_log, "w").close()
    start = time.monotonic()
    project.run(*args)
    elapsed = time.monotonic() - start
    lines = project.ssh_log_lines()
    return (
        elapsed,
        sum(line.startswith("connect ") for line in lines),
        sum(line.startswith("change ") for line in lines),
    )


def measure(count: int, inv: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = f"scale{count}"
        project = Project(tmp, stack)
        with open(os.path.join(project.dir, "stacks", f"Pulumi.{stack}.yaml"), "w") as f:
            yaml.safe_dump(stack_config(count, inv), f)
        try:
            up, up_conn, _ = timed(project, "up", "--yes", "--skip-preview")
            preview, preview_conn, _ = timed(project, "preview", "--expect-no-changes")
            noop, noop_conn, noop_changes = timed(project, "up", "--yes", "--skip-preview")
            print(
                f"{count:4d} nodes  up {up:6.1f} s ({up_conn} connections)  "
                f"unchanged preview {preview:5.1f} s ({preview_conn} connections)  "
                f"no-op up {noop:5.1f} s ({noop_conn} connections, {noop_changes} mutating)"
            )
        finally:
            project.run("destroy", "--yes", "--skip-preview", check=False)


def main() -> None:
    inv = lab.inventory()
    if not inv:
        sys.exit("the lab is down: run `python -m lab up` first")
    for count in [int(a) for a in sys.argv[1:]] or [3, 10, 25, 50]:
        measure(count, inv)


if __name__ == "__main__":
    main()
