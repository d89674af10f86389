"""A short election timeout for a fresh cluster's first mons, while they meet.

Ceph's classic election waits `mon_election_timeout` (5 s) for a mon that missed the
proposal. The first mons start within a second of each other and miss it, in the first
election and again in the one after the initial monmap's commit: 10 of a bring-up's 12 s
to the quorum (bench/README). A helper detached on the node sets 1 s on its mon through the
mon's admin socket as soon as the socket answers (a runtime override, held in the process
only), and takes it away once the mon is in a quorum of its whole monmap, or after `limit`
seconds. Nothing is written to ceph.conf or the mons' store: a restarted mon never has it,
and a killed run leaves at most a mon with the short timeout until its helper's limit.
"""

from __future__ import annotations

import shlex

from providers.bridge_scripts import RUN_DIR
from providers.transport import Session

BOOTSTRAP_TIMEOUT = "1"  # seconds; the same on a busy 2-core lab (bench/README)

# Run by the node's python3 (Ceph's CLI needs it), standard library only: the `ceph daemon`
# CLI takes longer to start than the mons take to call their first election.
SCRIPT = r"""
import json, socket, struct, sys, time
path, value, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + limit

def call(cmd):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(json.dumps(cmd).encode() + b"\0")
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("admin socket closed early")
            data += chunk
        return data[4:].decode()

def full_quorum():
    status = json.loads(call({"prefix": "mon_status"}))
    mons = status.get("monmap", {}).get("mons", [])
    return status.get("state") in ("leader", "peon") and len(status.get("quorum", [])) == len(mons)

def set_short():
    print(call({"prefix": "config set", "var": "mon_election_timeout", "val": [value]}))
    return True

def unset():
    print(call({"prefix": "config unset", "var": "mon_election_timeout"}))
    return True

def until(step, pause, end):
    while time.monotonic() < end:
        try:
            if step():
                return True
        except (OSError, ValueError):
            pass
        time.sleep(pause)
    return False

if until(set_short, 0.01, end):
    until(full_quorum, 0.5, end)
    until(unset, 0.5, max(end, time.monotonic() + 30))
"""


def asok(cluster: str, name: str) -> str:
    """The mon's admin socket, where Ceph puts it by default."""
    return f"/var/run/ceph/{cluster}-mon.{name}.asok"


def log_path(cluster: str, name: str) -> str:
    return f"{RUN_DIR}/{cluster}-mon.{name}-first-election.log"


def start_helper(node: Session, cluster: str, name: str, limit: float) -> None:
    """Before the mon starts, so that it is waiting for the socket when the mon opens it.
    A stale socket of an earlier mon refuses connections: the helper keeps trying."""
    helper = shlex.join(
        ["setsid", "-f", "python3", "-c", SCRIPT, asok(cluster, name), BOOTSTRAP_TIMEOUT]
        + [str(int(limit))]
    )
    log = shlex.quote(log_path(cluster, name))
    node.run(
        ["sh", "-c", f"mkdir -p {shlex.quote(RUN_DIR)} && {helper} </dev/null >{log} 2>&1"],
        change=True,
    )
