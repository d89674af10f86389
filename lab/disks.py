"""Raw OSD disks: sparse files under the state dir attached as loop devices.
/dev is shared with the host, so a node simply uses /dev/loopK."""

import json
import os
import re

from . import const
from .util import sh

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"bad disk size {text!r}: use e.g. 10G, 512M")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def create(node: str, count: int, size: int) -> list:
    """Make `count` sparse files for node and attach each; returns the loop devices."""
    ddir = const.node_dir(node) / "disks"
    ddir.mkdir(parents=True, exist_ok=True)
    devices = []
    for i in range(count):
        path = ddir / f"disk{i}.img"
        with open(path, "wb") as f:
            f.truncate(size)
        devices.append(sh("losetup", "--find", "--show", path).stdout.strip())
    return devices


def lab_loops() -> list:
    """(device, backing file) for every loop device backed by a file under the state dir,
    including files already deleted (losetup then appends ' (deleted)')."""
    out = sh("losetup", "--list", "--json", "--output", "NAME,BACK-FILE", check=False).stdout
    loops = json.loads(out or "{}").get("loopdevices", [])
    prefix = str(const.STATE) + os.sep
    return [
        (d["name"], d["back-file"]) for d in loops if (d.get("back-file") or "").startswith(prefix)
    ]


def attached(path) -> bool:
    return bool(sh("losetup", "--associated", str(path), check=False).stdout.strip())


def detach_all():
    for dev, _ in lab_loops():
        sh("losetup", "--detach", dev, check=False)
