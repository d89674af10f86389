"""The process the engine runs dynamic providers in. The SDK serves all of a stack's
provider calls there from a pool of 4 threads (pulumi/dynamic/__main__.py), whatever the
engine's --parallel (its default: 4 per core): with 5 nodes, 5 OSD creates and 10 mgr and
MDS creates queued behind 4 threads (bench/README, "Bring-up by node count"). Nothing
outside the pool holds it, so a call widens the pool it runs in."""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

# The engine's --parallel still limits how many calls it sends at once; this only stops the
# provider process from queuing what the engine already let through.
WORKERS = 32


def widen() -> None:
    """Let the pool serving this call run up to WORKERS calls at once; nothing outside
    such a pool (a unit test, the program's own threads). A pool's worker thread holds a
    weak reference to its pool as its first argument (concurrent.futures.thread); the pool
    starts the new threads as calls arrive."""
    args = getattr(threading.current_thread(), "_args", ())
    pool = args[0]() if args and isinstance(args[0], weakref.ref) else None
    if isinstance(pool, ThreadPoolExecutor) and pool._max_workers < WORKERS:
        pool._max_workers = WORKERS
