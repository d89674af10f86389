"""Benchmark: the lab stack's `pulumi up` from empty nodes against bench/serial_bringup.sh,
a plain serial shell script of the same steps, by phase, in the same session.

    CEPHKVM_LAB=3 .venv/bin/python bench/bringup_vs_serial.py [--serial-first] [--rounds N]

Brings this lab instance (CEPHKVM_LAB) up fresh, measures the `up` as bringup_phases.py does,
takes the lab down (which removes everything the stack made: no `destroy` needed, the
throwaway state goes with the temp dir), brings it up fresh again, runs the script, takes the
lab down; N rounds (2: A B A B). Prints a table per round with each phase's length ratio
(pulumi / serial), up to the mounts, the VM step (split at QEMU's start, from its log on the
node: the work before the guest runs, then the guest's boot) and in total, then those ratios
over all rounds; asserts nothing. Needs `make setup` and the guest image.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lab  # noqa: E402
from bringup_phases import PHASES, began, measure  # noqa: E402
from tests.cli import Project  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serial_bringup.sh")
# The script's order. Its one Ceph daemon phase covers several of bringup_phases' PHASES.
ORDER = [
    "start",  # the up's CLI and program until its first resource; the script has none
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
assert {GROUPS.get(p, p) for p in PHASES.values()} | {"start"} == set(ORDER), "phase names drifted"


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


GUEST = ("node1", "lab-vm1")  # the lab stack's VM, and the script's VM and VM_NODE


def guest_started() -> float:
    """When libvirt last started the guest's QEMU (epoch seconds), from its log on the node."""
    node, vm = GUEST
    grep = f"grep ': starting up' /var/log/libvirt/qemu/{vm}.log | tail -n 1"
    line = lab.run(node, ["sh", "-c", grep], check=True).stdout
    return datetime.strptime(line.split(": starting up")[0], "%Y-%m-%d %H:%M:%S.%f%z").timestamp()


def with_boot(spans: dict, zero: float) -> dict:
    """spans and "guest boot": from QEMU's start (zero: the epoch of the spans' 0) to the
    VM step's end."""
    if "VM" in spans:
        spans["guest boot"] = (guest_started() - zero, spans["VM"][1])
    return spans


def fresh_lab() -> None:
    lab.up(nodes=3, fresh=True)


def pulumi_run() -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp, "lab")  # after `lab up`: it copies the new inventory
        project.edit_config(_the_scripts_end)
        log = os.path.join(tmp, "events.jsonl")
        spans, total = measure(project, log)
        return with_boot(grouped(spans), began(log)), total


def _the_scripts_end(config: dict) -> None:
    """The script waits until the guest agent reports an address; the stack's default also
    waits for cloud-init to finish in the guest."""
    for vm in config["cephkvm:vms"]:
        vm["wait_for"] = "address"


def serial_run() -> tuple[dict, float]:
    start, zero = time.monotonic(), time.time()
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
    return with_boot(spans, zero), total


def cell(span) -> str:
    if not span:
        return "-"
    begin, end = span
    return f"{begin:5.1f} -> {end:5.1f} s ({end - begin:5.1f} s)"


def to_mounts(spans: dict) -> float:
    """Seconds from the start until CephFS was mounted on every node."""
    return spans["mounts"][1]


def vm_step(spans: dict) -> float:
    begin, end = spans.get("VM", (0.0, 0.0))
    return end - begin


def pre_boot(spans: dict) -> float:
    """The VM step until QEMU started: template, overlay, seed and domain."""
    return spans["guest boot"][0] - spans["VM"][0] if "guest boot" in spans else 0.0


def guest_boot(spans: dict) -> float:
    begin, end = spans.get("guest boot", (0.0, 0.0))
    return end - begin


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def table(pulumi: tuple, serial: tuple) -> str:
    """One round: each phase from -> to, and its length's ratio (pulumi / serial)."""
    (p_spans, p_total), (s_spans, s_total) = pulumi, serial
    rows = [
        f"{'phase':15s} | {'pulumi up (from -> to, length)':32s} | "
        f"{'serial script':31s} | length ratio",
        "-" * 16 + "+" + "-" * 34 + "+" + "-" * 33 + "+" + "-" * 13,
    ]
    for name in ORDER:
        p, s = p_spans.get(name), s_spans.get(name)
        r = ratio(p[1] - p[0], s[1] - s[0]) if p and s else "-"
        rows.append(f"{name:15s} | {cell(p):32s} | {cell(s):31s} | {r}")
    for name, a, b in (
        ("to mounts", to_mounts(p_spans), to_mounts(s_spans)),
        ("VM step", vm_step(p_spans), vm_step(s_spans)),
        (" before QEMU", pre_boot(p_spans), pre_boot(s_spans)),
        (" guest boot", guest_boot(p_spans), guest_boot(s_spans)),
        ("total", p_total, s_total),
    ):
        rows.append(f"{name:15s} | {a:5.1f} s{'':25s} | {b:5.1f} s{'':24s} | {ratio(a, b)}")
    return "\n".join(rows)


def summary(rounds: list) -> str:
    """The ratios of every round, then over all rounds (sums: a slow round weighs more)."""
    lines = []
    steps = (
        ("to mounts", to_mounts),
        ("VM step", vm_step),
        ("VM before QEMU", pre_boot),
        ("guest boot", guest_boot),
    )
    for what, get in steps:
        each = [ratio(get(p[0]), get(s[0])) for p, s in rounds]
        p_sum = sum(get(p[0]) for p, _ in rounds)
        s_sum = sum(get(s[0]) for _, s in rounds)
        lines.append(f"{what}: {ratio(p_sum, s_sum)} (rounds: {', '.join(each)})")
    each = [ratio(p[1], s[1]) for p, s in rounds]
    p_sum, s_sum = sum(p[1] for p, _ in rounds), sum(s[1] for _, s in rounds)
    lines.append(f"total: {ratio(p_sum, s_sum)} (rounds: {', '.join(each)})")
    return "\n".join(lines)


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    args = sys.argv[1:]
    serial_first = "--serial-first" in args  # to see what the order does
    rounds = int(args[args.index("--rounds") + 1]) if "--rounds" in args else 2
    print(
        f"lab instance {lab.const.INSTANCE or '(default)'}, subnet {lab.const.SUBNET}, "
        f"{os.cpu_count()} cores, {rounds} rounds",
        flush=True,
    )
    order = [("serial", serial_run), ("pulumi", pulumi_run)]
    order = order if serial_first else order[::-1]
    done = []
    try:
        for i in range(rounds):
            results = {}
            for name, run in order:  # A B A B
                fresh_lab()
                before = load()
                results[name] = run()
                print(
                    f"round {i + 1} {name}: {results[name][1]:.1f} s "
                    f"({before} before, {load()} after)",
                    flush=True,
                )
                lab.down()
            done.append((results["pulumi"], results["serial"]))
            print(table(results["pulumi"], results["serial"]), flush=True)
    finally:
        left = lab.down()
        if left:
            print(f"LEFT BEHIND: {left}", file=sys.stderr)
    print(summary(done))


if __name__ == "__main__":
    main()
