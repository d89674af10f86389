"""The provider process serves more than the SDK's 4 calls at once (providers/provider_host)."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from providers import provider_host

pytestmark = pytest.mark.unit


def test_the_sdk_serves_provider_calls_from_a_pool_of_four():
    """What widen() is for; a new SDK that changes it fails here, not in a bring-up. (Read,
    not imported: importing it starts the server.)"""
    import pulumi.dynamic

    with open(os.path.join(os.path.dirname(pulumi.dynamic.__file__), "__main__.py")) as f:
        assert "futures.ThreadPoolExecutor(max_workers=4)" in f.read()


def _run_at_once(pool: ThreadPoolExecutor, calls: int, first=None) -> bool:
    """Whether `calls` calls submitted to pool can all be running at the same time."""
    if first is not None:
        pool.submit(first).result(timeout=5)
    together = threading.Barrier(calls, timeout=2)

    def call():
        try:
            together.wait()
            return True
        except threading.BrokenBarrierError:
            return False

    return all(f.result(timeout=10) for f in [pool.submit(call) for _ in range(calls)])


def test_a_call_widens_the_pool_it_runs_in():
    with ThreadPoolExecutor(max_workers=4) as narrow:
        assert not _run_at_once(narrow, 6)  # the SDK's pool, as it is
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert _run_at_once(pool, 6, first=provider_host.widen)
        assert pool._max_workers == provider_host.WORKERS


def test_a_provider_check_widens_its_pool():
    from providers.ceph_pool import CephPoolProvider

    with ThreadPoolExecutor(max_workers=4) as pool:
        pool.submit(CephPoolProvider().check, {}, {}).result(timeout=5)
        assert pool._max_workers == provider_host.WORKERS
