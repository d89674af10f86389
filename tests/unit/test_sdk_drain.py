"""The Output drain that replaces the SDK's: each Output waited for once, a failure of the
program raised at once, an Output of a resource that failed to register not an error."""

import asyncio

import pytest
from pulumi.runtime import stack as sdk_stack
from pulumi.runtime.settings import SETTINGS

from components import sdk_drain

pytestmark = pytest.mark.unit


def _drain_with(*coros):
    async def run():
        tasks = [asyncio.ensure_future(c) for c in coros]
        with SETTINGS.lock:
            SETTINGS.outputs.clear()
            SETTINGS.outputs.update(tasks)
        try:
            await asyncio.wait_for(sdk_drain._drain_outputs(), timeout=5)
        finally:
            for t in tasks:
                t.cancel()
            with SETTINGS.lock:
                SETTINGS.outputs.clear()

    asyncio.run(run())


async def _value(v, delay=0.01):
    await asyncio.sleep(delay)
    return v


async def _fail(exc, delay=0.01):
    await asyncio.sleep(delay)
    raise exc


def test_every_output_is_waited_for():
    done = []

    async def noted(i):
        await asyncio.sleep(0.001 * i)
        done.append(i)

    _drain_with(*(noted(i) for i in range(200)))
    assert sorted(done) == list(range(200))


def test_a_failure_is_raised_without_waiting_for_the_rest():
    with pytest.raises(ValueError, match="apply failed"):
        _drain_with(_fail(ValueError("apply failed")), _value(1, delay=3600))


def test_an_output_of_a_resource_that_failed_to_register_is_not_an_error():
    _drain_with(_fail(sdk_stack.ResourceRegistrationFailed()), _value(1))


def test_outputs_made_while_draining_are_waited_for_too():
    seen = []

    async def spawns():
        await asyncio.sleep(0.01)
        with SETTINGS.lock:
            SETTINGS.outputs.add(asyncio.ensure_future(_value_noted(seen)))

    async def _value_noted(where):
        await asyncio.sleep(0.02)
        where.append("late")

    _drain_with(spawns())
    assert seen == ["late"]


def test_installed_only_over_the_sdk_it_was_written_for(monkeypatch):
    monkeypatch.setattr(sdk_stack, "wait_for_rpcs", sdk_stack.wait_for_rpcs)
    stock = sdk_stack.wait_for_rpcs
    monkeypatch.setattr(sdk_drain._version, "_VERSION", "9.9.9")
    sdk_drain.install()
    assert sdk_stack.wait_for_rpcs is stock
    monkeypatch.setattr(sdk_drain._version, "_VERSION", sdk_drain.FOR_VERSION)
    sdk_drain.install()
    assert sdk_stack.wait_for_rpcs is sdk_drain.wait_for_rpcs


def test_the_pinned_sdk_is_the_one_it_was_written_for():
    """Bumping pulumi in requirements.txt: check the SDK's wait_for_rpcs, then FOR_VERSION."""
    import os

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "requirements.txt")) as f:
        pins = dict(line.strip().split("==", 1) for line in f if "==" in line)
    assert pins["pulumi"] == sdk_drain.FOR_VERSION
