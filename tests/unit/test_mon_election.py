"""The first-election helper's script (providers/mon_election.py), run by this machine's
python3 against an admin socket served here the way a mon serves its own."""

import json
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from providers import mon_election

pytestmark = pytest.mark.unit


class FakeMonSocket:
    """A mon's admin socket: a JSON command ended by NUL, a length-prefixed answer. The
    mon reaches a quorum of its whole monmap after `electing` mon_status answers."""

    def __init__(self, path: str, electing: int):
        self.path, self.electing, self.asked = path, electing, []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\0"):
                    data += conn.recv(4096)
                cmd = json.loads(data[:-1])
                self.asked.append(cmd)
                answer = json.dumps(self._answer(cmd)).encode()
                conn.sendall(struct.pack(">I", len(answer)) + answer)

    def _answer(self, cmd):
        if cmd["prefix"] != "mon_status":
            return {"success": ""}
        self.electing -= 1
        mons = [{"name": n} for n in ("node1", "node2", "node3")]
        if self.electing >= 0:
            return {"state": "electing", "quorum": [], "monmap": {"mons": mons}}
        return {"state": "peon", "quorum": [0, 1, 2], "monmap": {"mons": mons}}

    def close(self):
        self.server.close()


def _helper(path: str, limit: float) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            mon_election.SCRIPT,
            path,
            mon_election.BOOTSTRAP_TIMEOUT,
            str(limit),
        ],
        stdout=subprocess.DEVNULL,
    )


def _prefixes(mon: FakeMonSocket) -> list:
    return [c["prefix"] for c in mon.asked]


def test_the_short_timeout_is_set_as_the_socket_opens_and_taken_away_at_full_quorum(tmp_path):
    path = str(tmp_path / "ceph-mon.node1.asok")
    helper = _helper(path, 30)  # before the mon, as the provider starts it
    mon = FakeMonSocket(path, electing=2)
    try:
        assert helper.wait(timeout=20) == 0
    finally:
        mon.close()
    assert mon.asked[0] == {"prefix": "config set", "var": "mon_election_timeout", "val": ["1"]}
    assert _prefixes(mon)[1:] == ["mon_status"] * 3 + ["config unset"]
    assert mon.asked[-1] == {"prefix": "config unset", "var": "mon_election_timeout"}


def test_without_a_full_quorum_the_override_goes_at_the_limit(tmp_path):
    path = str(tmp_path / "ceph-mon.node1.asok")
    mon = FakeMonSocket(path, electing=10**6)
    try:
        assert _helper(path, 1.5).wait(timeout=20) == 0
    finally:
        mon.close()
    prefixes = _prefixes(mon)
    assert prefixes[0] == "config set" and prefixes[-1] == "config unset"
    assert set(prefixes[1:-1]) == {"mon_status"}


def test_a_mon_that_never_opens_its_socket_leaves_the_helper_ending_at_the_limit(tmp_path):
    path = str(tmp_path / "ceph-mon.node1.asok")
    open(path, "w").close()  # a stale socket file of an earlier mon: connections refused
    start = time.monotonic()
    assert _helper(path, 0.5).wait(timeout=20) == 0
    assert time.monotonic() - start >= 0.5, "it kept trying until its limit"
