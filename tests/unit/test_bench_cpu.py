"""bench/cpu_sample.py on this machine: a short busy process is seen, put under its kind,
and its CPU falls in the window it ran in."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from cpu_sample import Sampler, kind  # noqa: E402

BUSY = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"


def test_a_busy_process_is_counted_under_its_kind_and_in_its_window():
    with Sampler() as sampler:
        time.sleep(0.2)
        began = time.monotonic() - sampler.t0
        subprocess.run([sys.executable, "-c", BUSY, "ceph-volume"], check=True)
        ended = time.monotonic() - sampler.t0
        time.sleep(0.2)
    inside = sampler.by_window(began, ended)["ceph-volume"]
    assert 0.2 <= inside <= 0.6, inside  # its last 50 ms may fall between two looks
    assert sampler.by_window(0, began - 0.1)["ceph-volume"] == 0


def test_kinds_by_command_line():
    assert kind("python3 - ceph --cluster ceph health") == "ceph CLI"
    assert kind("/usr/bin/python3 /usr/bin/ceph --cluster ceph osd tree") == "ceph CLI"
    assert kind("/usr/bin/ceph-osd --cluster ceph -i 1") == "ceph-osd"
    assert kind("bash") == "other"
