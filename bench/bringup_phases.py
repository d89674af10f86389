"""Benchmark: lab bring-up from empty to HEALTH_OK, CephFS on every node and a VM booted,
broken down by phase (from the engine's event log: when each resource started and ended).
Prints figures; asserts nothing. Needs a running lab and `make setup`; honours CEPHKVM_LAB.
--code=DIR: the project's code from DIR (a `git worktree` of another commit), to set this
tree's figures against another's on fresh labs. bringup_vs_serial.py reuses measure()
against bench/serial_bringup.sh."""

import json
import os
import sys
import tempfile
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lab  # noqa: E402
from tests.cli import ROOT, Project  # noqa: E402

PHASES = {
    "Node": "facts",
    "NodePrep": "node prep",
    "CephCluster": "identity",
    "CephConf": "identity",
    "CephMon": "mons",
    "CephConfig": "quorum + options",
    "CephMgr": "mgrs",
    "CephMds": "MDS",
    "CephOsd": "OSDs",
    "CephPool": "pools",
    "CephFilesystem": "CephFS",
    "CephFSMount": "mounts",
    "KvmBridge": "bridges",
    "CloudVM": "VM",
}


def phases(event_log: str) -> dict:
    """phase -> (first start, last end) in seconds since the log's first event."""
    spans: dict = defaultdict(lambda: [float("inf"), 0.0])
    first = None
    with open(event_log) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            stamp = event.get("timestamp")
            first = stamp if first is None else first
            for key, index in (("resourcePreEvent", 0), ("resOutputsEvent", 1)):
                if key in event:
                    kind = event[key]["metadata"]["type"].rsplit(":", 1)[-1]
                    if kind in PHASES:
                        span = spans[PHASES[kind]]
                        span[index] = (min if index == 0 else max)(span[index], stamp - first)
    return dict(spans)


def measure(project: Project, log: str) -> tuple[dict, float]:
    """`up` of project's stack from empty nodes: (phase -> (start, end), total seconds).
    `up --json` streams the engine's events, one JSON object per line, into log."""
    start = time.monotonic()
    with open(log, "w") as f:
        f.write(project.run("up", "--yes", "--skip-preview", "--json").stdout)
    return phases(log), time.monotonic() - start


def ordered(spans: dict) -> list:
    """(name, (begin, end)) in the order the phases began."""
    return sorted(spans.items(), key=lambda kv: kv[1][0])


def main() -> None:
    if not lab.inventory():
        sys.exit("the lab is down: run `python -m lab up` first")
    code = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--code=")), ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp, "lab", code=code)
        try:
            spans, total = measure(project, os.path.join(tmp, "events.jsonl"))
            for name, (begin, end) in ordered(spans):
                print(f"{name:15s} {begin:6.1f} s -> {end:6.1f} s  ({end - begin:5.1f} s)")
            print(f"{'total up':15s} {total:6.1f} s")
        finally:
            project.run("destroy", "--yes", "--skip-preview", check=False)


if __name__ == "__main__":
    main()
