"""CPU time by kind of process while something runs (the lab's nodes share this machine's
process table): every process's utime + stime read from /proc every 50 ms, so a process
that lives a few tenths of a second (one `ceph` call) is seen. Each process's CPU is spread
evenly over the time it was seen, then summed per kind and per window (a bring-up phase).
bringup_phases.py --cpu prints it per phase."""

import os
import threading
import time
from collections import Counter

HZ = os.sysconf("SC_CLK_TCK")
# (kind, words one of which the command line holds), first match wins
KINDS = [
    ("ceph CLI", ("/usr/bin/ceph ", "python3 - ceph ")),
    ("ceph-volume", ("ceph-volume",)),
    ("ceph-osd", ("ceph-osd",)),
    ("ceph-mon", ("ceph-mon",)),
    ("ceph-mgr", ("ceph-mgr",)),
    ("ceph-mds", ("ceph-mds",)),
    ("ceph-fuse", ("ceph-fuse",)),
    ("qemu", ("qemu",)),
    ("pulumi", ("pulumi",)),
    ("sshd", ("sshd",)),
]


def kind(cmdline: str) -> str:
    line = cmdline + " "
    return next((k for k, words in KINDS if any(w in line for w in words)), "other")


class Sampler:
    """Start it, run the work, stop it; then by_window(a, b) in seconds since the start."""

    def __init__(self, period: float = 0.05):
        self.period, self.seen, self.t0, self.born_after = period, {}, time.monotonic(), 0
        self.started = time.time()  # wall clock, to line windows up with other logs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.t0, self.started = time.monotonic(), time.time()
        with open("/proc/uptime") as f:  # processes started later used all their CPU here
            self.born_after = float(f.read().split()[0]) * HZ
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic() - self.t0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                self._look(pid, now)
            self._stop.wait(self.period)

    def _look(self, pid: str, now: float) -> None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu, start = (int(fields[11]) + int(fields[12])) / HZ, int(fields[19])
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            entry = self.seen.get((pid, start))
            if entry is None or entry["name"] != name:  # new, or it exec'd another program
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                cpu0 = 0.0 if start >= self.born_after else cpu
                entry = {"first": now, "cpu0": cpu0, **(entry or {}), "name": name}
                entry["kind"] = kind(cmdline)
                self.seen[(pid, start)] = entry
            entry.update(cpu=cpu, last=now)
        except (OSError, ValueError, IndexError):  # gone meanwhile
            pass

    def by_window(self, begin: float, end: float) -> Counter:
        """cpu-seconds per kind spent between begin and end."""
        used: Counter = Counter()
        for p in self.seen.values():
            span = p["last"] - p["first"]
            overlap = max(0.0, min(p["last"], end) - max(p["first"], begin))
            share = overlap / span if span > 0 else float(begin <= p["first"] <= end)
            used[p["kind"]] += (p["cpu"] - p["cpu0"]) * share
        return used
