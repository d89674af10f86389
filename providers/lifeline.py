"""The dynamic-provider process ends when its engine does.

The Pulumi CLI starts this process in a process group of its own, so a `kill -9` of the CLI
leaves it running, and whatever it was doing on the nodes could go on while the operator's
next run starts the same step again. A thread here checks every few seconds that the
engine (the CLI's gRPC address, the process's first argument) still accepts connections;
when it has not for a while, the SSH connections are closed (which lets the nodes' run
locks go, see transport.py) and the process exits.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

INTERVAL = 2.0  # seconds between checks
MISSES = 3  # failed checks in a row that mean the engine is gone

_started = threading.Lock()
_running = False


def engine_address() -> tuple[str, int] | None:
    """The engine's host and port when this process is Pulumi's dynamic provider."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(spec, "name", "") != "pulumi.dynamic.__main__" or len(sys.argv) < 2:
        return None
    host, _, port = sys.argv[1].rpartition(":")
    return (host, int(port)) if port.isdigit() else None


def start() -> None:
    global _running
    address = engine_address()
    with _started:
        if _running or address is None:
            return
        _running = True
    threading.Thread(target=_watch, args=(address,), name="cephkvm-lifeline", daemon=True).start()


def _alive(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=INTERVAL).close()
        return True
    except OSError:
        return False


def _watch(address: tuple[str, int]) -> None:
    misses = 0
    while True:
        time.sleep(INTERVAL)
        misses = 0 if _alive(address) else misses + 1
        if misses >= MISSES:
            _end()


def _end() -> None:
    try:
        # stderr is a pipe to the dead CLI: writing may fail, which must not stop the exit.
        sys.stderr.write(
            "cephkvm: the Pulumi engine is gone; closing node connections and exiting\n"
        )
        sys.stderr.flush()
    except Exception:
        pass
    try:
        from providers.transport import POOL

        POOL.close_all()
    finally:
        os._exit(3)
