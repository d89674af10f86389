"""Benchmark: lab bring-up from empty to HEALTH_OK, CephFS on every node and a VM booted,
broken down by phase (from the engine's event log: when each resource started and ended).
Prints figures; asserts nothing. Needs a running lab and `make setup`; honours CEPHKVM_LAB.
--code=DIR: the project's code from DIR (a `git worktree` of another commit), to set this
tree's figures against another's on fresh labs; --no-vm: to the mounts; --cpu: the CPU each
kind of process used per phase. bringup_vs_serial.py reuses measure() against
bench/serial_bringup.sh."""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lab  # noqa: E402
from cpu_sample import Sampler  # noqa: E402
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
    """phase -> (first start, last end) in seconds since the `up` began; "start": until
    the engine began its first resource (the CLI, the program and its config)."""
    spans: dict = defaultdict(lambda: [float("inf"), 0.0])
    for event in events(event_log):
        if "resourcePreEvent" in event and "start" not in spans:
            spans["start"] = [0.0, event["received"]]
        for key, index in (("resourcePreEvent", 0), ("resOutputsEvent", 1)):
            if key in event:
                kind = event[key]["metadata"]["type"].rsplit(":", 1)[-1]
                if kind in PHASES:
                    span = spans[PHASES[kind]]
                    span[index] = (min if index == 0 else max)(span[index], event["received"])
    return dict(spans)


def events(event_log: str) -> list[dict]:
    with open(event_log) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def measure(project: Project, log: str) -> tuple[dict, float]:
    """`up` of project's stack from empty nodes: (phase -> (start, end), total seconds).
    `up --json` streams the engine's events, one JSON object per line, into log, each
    stamped as it arrives (`received`: seconds since the `up` began; the engine's own
    `timestamp` has whole seconds). The log's first line holds the `up`'s start (`began`,
    epoch seconds)."""
    with open(log, "w") as f, tempfile.TemporaryFile("w+") as err:
        began, start = time.time(), time.monotonic()
        f.write(json.dumps({"began": began}) + "\n")
        argv = project.command("up", "--yes", "--skip-preview", "--json")
        with subprocess.Popen(
            argv, cwd=project.dir, env=project.env, stdout=subprocess.PIPE, stderr=err, text=True
        ) as proc:
            for line in proc.stdout:
                if line.startswith("{"):
                    event = {**json.loads(line), "received": time.monotonic() - start}
                    line = json.dumps(event) + "\n"
                f.write(line)
        total = time.monotonic() - start
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"up exited {proc.returncode}:\n{err.read()[-4000:]}")
    return phases(log), total


def ordered(spans: dict) -> list:
    """(name, (begin, end)) in the order the phases began."""
    return sorted(spans.items(), key=lambda kv: kv[1][0])


def began(event_log: str) -> float:
    """The epoch of the spans' 0: when the `up` began."""
    return events(event_log)[0]["began"]


def print_cpu(sampler: Sampler, spans: dict, log: str) -> None:
    """cpu-seconds per kind of process in each phase (the lab's 2 cores: 2 per second)."""
    shift = began(log) - sampler.started
    for name, (begin, end) in ordered(spans):
        used = sampler.by_window(begin + shift, end + shift)
        top = ", ".join(f"{k} {v:.1f}" for k, v in used.most_common(5) if v >= 0.05)
        print(f"{name:15s} cpu-s {sum(used.values()):5.1f}: {top}")


def main() -> None:
    """--code=DIR: another tree's code; --no-vm: the stack without its VMs (to the mounts);
    --cpu: also the CPU each kind of process used in each phase (bench/cpu_sample.py)."""
    if not lab.inventory():
        sys.exit("the lab is down: run `python -m lab up` first")
    code = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--code=")), ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp, "lab", code=code)
        if "--no-vm" in sys.argv:
            project.edit_config(lambda c: c.__setitem__("cephkvm:vms", []))
        log = os.path.join(tmp, "events.jsonl")
        try:
            with Sampler() if "--cpu" in sys.argv else contextlib.nullcontext() as sampler:
                spans, total = measure(project, log)
            for name, (begin, end) in ordered(spans):
                print(f"{name:15s} {begin:6.1f} s -> {end:6.1f} s  ({end - begin:5.1f} s)")
            print(f"{'total up':15s} {total:6.1f} s")
            if sampler:
                print_cpu(sampler, spans, log)
        finally:
            project.run("destroy", "--yes", "--skip-preview", check=False)


if __name__ == "__main__":
    main()
