"""Benchmark: how long the lab VM pauses when it live-migrates (node1 -> node2 -> node1), per
setting: QEMU's defaults (the reference, measured in the same run), then the stack's
migration_max_downtime_ms and migration_auto_converge. Per move two measures: libvirt's own
(the VM's `last_migration` output: downtime, total time, data sent) and a probe from node3,
which pings the guest every 10 ms: the longest gap between two replies. Prints figures,
asserts nothing. Needs a running lab (`python -m lab up`) and the lab guest image.

    bench/migration_downtime.py [--moves N]    (N moves per setting, default 2)
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lab  # noqa: E402
from tests.cli import Project  # noqa: E402

SETTINGS = {
    "QEMU defaults (reference)": {},
    "max downtime 50 ms": {"migration_max_downtime_ms": 50},
    "max downtime 50 ms + auto-converge": {
        "migration_max_downtime_ms": 50,
        "migration_auto_converge": True,
    },
    "max downtime 20 ms + auto-converge": {
        "migration_max_downtime_ms": 20,
        "migration_auto_converge": True,
    },
}
TUNING = ("migration_max_downtime_ms", "migration_auto_converge")
STOP = "/tmp/cephkvm-bench-ping.stop"
REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from")


def ping_script(address: str) -> str:
    return (
        f"rm -f {STOP}; ping -D -n -i 0.01 {shlex.quote(address)} & p=$!; "
        f"while [ ! -e {STOP} ]; do sleep 0.1; done; kill -INT $p; wait $p; true"
    )


def longest_gap(ping_output: str) -> float:
    """Seconds between the two replies furthest apart."""
    stamps = [float(m.group(1)) for m in map(REPLY.match, ping_output.splitlines()) if m]
    return max((b - a for a, b in zip(stamps, stamps[1:])), default=float("nan"))


def vm(config: dict) -> dict:
    return config["cephkvm:vms"][0]


def tune(settings: dict):
    def change(config):
        for key in TUNING:
            vm(config).pop(key, None)
        vm(config).update(settings)

    return change


def move(project: Project, name: str, address: str, node: str) -> dict:
    project.edit_config(lambda c: vm(c).update(node=node))
    probe = subprocess.Popen(
        lab.ssh_argv("node3") + ["sh", "-c", shlex.quote(ping_script(address))],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)  # replies flowing before the move starts
    t0 = time.monotonic()
    try:
        project.run("up", "--yes", "--skip-preview")
        took = time.monotonic() - t0
    finally:
        lab.run("node3", ["touch", STOP])
        out, _ = probe.communicate(timeout=60)
    figures = project.outputs()["vms"][name].get("last_migration") or {}
    return {**figures, "up_s": took, "ping_gap_ms": longest_gap(out) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--moves", type=int, default=2)
    args = parser.parse_args()
    if not lab.inventory():
        sys.exit("the lab is down: run `python -m lab up` first")
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp, "lab")
        project.edit_config(lambda c: vm(c).update(node="node1"))
        try:
            project.run("up", "--yes", "--skip-preview")
            name = vm(project_config(project))["name"]
            address = project.outputs()["vms"][name]["addresses"][0]
            report(measure(project, name, address, args.moves))
        finally:
            project.run("destroy", "--yes", "--skip-preview", check=False)


def project_config(project: Project) -> dict:
    import yaml

    with open(project.stack_file) as f:
        return yaml.safe_load(f)["config"]


def measure(project: Project, name: str, address: str, moves: int) -> dict:
    rows = {}
    for label, settings in SETTINGS.items():
        project.edit_config(tune(settings))
        project.run("up", "--yes", "--skip-preview")  # a state-only change: no host work
        rows[label] = []
        for _ in range(moves):  # to the other node each time, from wherever it is
            there = project.outputs()["vms"][name]["host"]
            rows[label].append(
                move(project, name, address, "node1" if there == "node2" else "node2")
            )
    return rows


def report(rows: dict) -> None:
    print("| setting | libvirt downtime | ping gap (10 ms probe) | migration total | data | up |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, moves in rows.items():
        for m in moves:
            print(
                f"| {label} | {m.get('downtime_ms', '?')} ms | {m['ping_gap_ms']:.0f} ms | "
                f"{m.get('total_ms', '?')} ms | {m.get('data_mib', '?')} MiB | {m['up_s']:.1f} s |"
            )
    # Medians: the first move of a run also pays for opening the peers' connections.
    medians = {
        label: {
            k: _median([m.get(k) for m in moves])
            for k in ("downtime_ms", "ping_gap_ms", "total_ms")
        }
        for label, moves in rows.items()
    }
    reference = next(iter(medians.values()))
    for label, m in medians.items():
        ratios = ", ".join(
            f"{k} {m[k]:.0f} ({m[k] / reference[k]:.2f})" if m[k] and reference[k] else f"{k} ?"
            for k in m
        )
        print(f"{label}: median {ratios} (ratio to the reference)")


def _median(values: list):
    known = sorted(v for v in values if v is not None)
    return known[len(known) // 2] if known else None


if __name__ == "__main__":
    main()
