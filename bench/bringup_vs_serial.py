"""Benchmark: the lab stack's `pulumi up` from empty nodes against bench/serial_bringup.sh,
a plain serial shell script of the same steps, by phase, in the same session.

    CEPHKVM_LAB=3 .venv/bin/python bench/bringup_vs_serial.py [--serial-first]

Brings this lab instance (CEPHKVM_LAB) up fresh, measures the `up` as bringup_phases.py does,
takes the lab down (which removes everything the stack made: no `destroy` needed, the
throwaway state goes with the temp dir), brings it up fresh again, runs the script, takes the
lab down. Prints one table; asserts nothing. Needs `make setup` and the guest image.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lab  # noqa: E402
from bringup_phases import PHASES, measure  # noqa: E402
from tests.cli import Project  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serial_bringup.sh")
# The script's order. Its one Ceph daemon phase covers several of bringup_phases' PHASES.
ORDER = [
    "facts",
    "node prep",
    "bridges",
    "mons/mgrs/MDS",
    "OSDs",
    "pools",
    "CephFS",
    "mounts",
    "VM",
]
GROUPS = {p: "mons/mgrs/MDS" for p in ("identity", "mons", "quorum + options", "mgrs", "MDS")}
assert {GROUPS.get(p, p) for p in PHASES.values()} == set(ORDER), "phase names drifted"


def grouped(spans: dict) -> dict:
    """The up's phases folded into the script's: first start, last end of each group."""
    out: dict = {}
    for name, (begin, end) in spans.items():
        group = GROUPS.get(name, name)
        b, e = out.get(group, (begin, end))
        out[group] = (min(b, begin), max(e, end))
    return out


LINE = re.compile(r"^(?P<name>.+?)\s+(?P<begin>[\d.]+) s ->\s+(?P<end>[\d.]+) s")
TOTAL = re.compile(r"^total serial\s+(?P<total>[\d.]+) s")


def fresh_lab() -> None:
    lab.up(nodes=3, fresh=True)


def pulumi_run() -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp, "lab")  # after `lab up`: it copies the new inventory
        spans, total = measure(project, os.path.join(tmp, "events.jsonl"))
        return grouped(spans), total


def serial_run() -> tuple[dict, float]:
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", SCRIPT], capture_output=True, text=True, timeout=1800, env=dict(os.environ)
    )
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"serial_bringup.sh exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    spans, total = {}, wall
    for line in proc.stdout.splitlines():
        if m := TOTAL.match(line):
            total = float(m["total"])
        elif m := LINE.match(line):
            spans[m["name"]] = (float(m["begin"]), float(m["end"]))
    return spans, total


def cell(span) -> str:
    if not span:
        return "-"
    begin, end = span
    return f"{begin:5.1f} -> {end:5.1f} s ({end - begin:5.1f} s)"


def table(pulumi: tuple, serial: tuple) -> str:
    (p_spans, p_total), (s_spans, s_total) = pulumi, serial
    rows = [
        f"{'phase':15s} | {'pulumi up (from -> to, length)':32s} | serial script",
        "-" * 16 + "+" + "-" * 34 + "+" + "-" * 31,
    ]
    for name in ORDER:
        rows.append(f"{name:15s} | {cell(p_spans.get(name)):32s} | {cell(s_spans.get(name))}")
    rows.append(f"{'total':15s} | {p_total:5.1f} s{'':25s} | {s_total:5.1f} s")
    return "\n".join(rows)


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    serial_first = "--serial-first" in sys.argv[1:]  # to see what the order does
    print(
        f"lab instance {lab.const.INSTANCE or '(default)'}, subnet {lab.const.SUBNET}, "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    results = {}
    try:
        for name, run in (
            [("serial", serial_run), ("pulumi", pulumi_run)]
            if serial_first
            else [("pulumi", pulumi_run), ("serial", serial_run)]
        ):
            fresh_lab()
            before = load()
            results[name] = run()
            print(f"{name}: {results[name][1]:.1f} s ({before} before, {load()} after)", flush=True)
            lab.down()
    finally:
        left = lab.down()
        if left:
            print(f"LEFT BEHIND: {left}", file=sys.stderr)
    print(table(results["pulumi"], results["serial"]))


if __name__ == "__main__":
    main()
