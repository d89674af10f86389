"""Benchmark: how long the lab VM pauses when it live-migrates (node1 -> node2 -> node1), per
setting: QEMU's defaults (the reference, measured in the same run), then the stack's
migration_max_downtime_ms and migration_auto_converge. Per move three measures: libvirt's
own (the VM's `last_migration` output: downtime, total time, data sent); a probe from node3,
which pings the guest every 2 ms: the longest gap between two replies; and where that gap
went, from QEMU's own event timestamps (the source's STOP to the destination's RESUME: the
guest paused) and the probe's first reply after RESUME (the guest answering again; under TCG
it first re-translates the code it runs). Prints figures, asserts nothing. Needs a running
lab (`python -m lab up`) and the lab guest image.

    bench/migration_downtime.py [--moves N]    (N moves per setting, default 2)
"""

import argparse
import datetime
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
# virsh qemu-monitor-event --timestamp: "2026-12-05 07:10:18.204+0000: event STOP for domain 'x'"
EVENT = re.compile(r"^(\S+ \S+[+-]\d{4}): event (\w+) for domain '([^']+)'")
PROBE_INTERVAL = "0.002"  # seconds; root may ping this often without flooding


def ping_script(address: str) -> str:
    return (
        f"rm -f {STOP}; ping -D -n -i {PROBE_INTERVAL} {shlex.quote(address)} & p=$!; "
        f"while [ ! -e {STOP} ]; do sleep 0.1; done; kill -INT $p; wait $p; true"
    )


def replies(ping_output: str) -> list[float]:
    return [float(m.group(1)) for m in map(REPLY.match, ping_output.splitlines()) if m]


def longest_gap(ping_output: str) -> float:
    """Seconds between the two replies furthest apart."""
    stamps = replies(ping_output)
    return max((b - a for a, b in zip(stamps, stamps[1:])), default=float("nan"))


def event_time(virsh_output: str, event: str, domain: str) -> float | None:
    """The epoch seconds of the domain's last such QEMU event (QEMU stamps its events with
    the host clock, which every lab node shares with the probe; virsh prints it in the
    local zone, with its offset)."""
    stamps = [
        datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
        for m in map(EVENT.match, virsh_output.splitlines())
        if m and m.group(2) == event and m.group(3) == domain
    ]
    return stamps[-1] if stamps else None


def where_the_gap_went(source_events: str, dest_events: str, ping_output: str, domain: str):
    """The guest's pause (source STOP -> destination RESUME) and the wait from RESUME to the
    probe's first reply, in ms; {} without both events."""
    stop = event_time(source_events, "STOP", domain)
    resume = event_time(dest_events, "RESUME", domain)
    if stop is None or resume is None:
        return {}
    after = [t for t in replies(ping_output) if t > resume]
    figures = {"paused_ms": (resume - stop) * 1000}
    if after:
        figures["first_reply_ms"] = (after[0] - resume) * 1000
    return figures


def qemu_events(node: str) -> subprocess.Popen:
    """Every domain's QEMU events on node, timestamped (the destination's domain does not
    exist yet when the move starts)."""
    argv = ["virsh", "qemu-monitor-event", "--loop", "--timestamp", "--timeout", "120"]
    return subprocess.Popen(lab.ssh_argv(node) + argv, stdout=subprocess.PIPE, text=True)


def vm(config: dict) -> dict:
    return config["cephkvm:vms"][0]


def tune(settings: dict):
    def change(config):
        for key in TUNING:
            vm(config).pop(key, None)
        vm(config).update(settings)

    return change


def move(project: Project, name: str, address: str, node: str) -> dict:
    source = project.outputs()["vms"][name]["host"]
    project.edit_config(lambda c: vm(c).update(node=node))
    events = {n: qemu_events(n) for n in (source, node)}
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
        for listener in events.values():
            listener.terminate()
    seen = {n: listener.communicate(timeout=60)[0] for n, listener in events.items()}
    figures = project.outputs()["vms"][name].get("last_migration") or {}
    return {
        **figures,
        **where_the_gap_went(seen[source], seen[node], out, name),
        "up_s": took,
        "ping_gap_ms": longest_gap(out) * 1000,
    }


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
    print(
        "| setting | libvirt downtime | ping gap (2 ms probe) | of which paused | then first "
        "reply | migration total | data | up |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, moves in rows.items():
        for m in moves:
            print(
                f"| {label} | {_ms(m, 'downtime_ms')} | {_ms(m, 'ping_gap_ms')} | "
                f"{_ms(m, 'paused_ms')} | {_ms(m, 'first_reply_ms')} | {_ms(m, 'total_ms')} | "
                f"{m.get('data_mib', '?')} MiB | {m['up_s']:.1f} s |"
            )
    # Medians: the first move of a run also pays for opening the peers' connections.
    medians = {
        label: {
            k: _median([m.get(k) for m in moves])
            for k in ("downtime_ms", "ping_gap_ms", "paused_ms", "first_reply_ms", "total_ms")
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


def _ms(move: dict, key: str) -> str:
    return f"{move[key]:.0f} ms" if move.get(key) is not None else "?"


def _median(values: list):
    known = sorted(v for v in values if v is not None)
    return known[len(known) // 2] if known else None


if __name__ == "__main__":
    main()
