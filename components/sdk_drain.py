"""The Python SDK's last step, waiting for every Output of the program, made linear.

pulumi 3.260's `wait_for_rpcs` waits with `asyncio.wait(FIRST_COMPLETED)` over every pending
Output and starts again after each completion: a callback on each pending Output every time
one resource registers, so a preview's cost grows with resources times Outputs (measured in
bench/README.md: most of an unchanged preview of 25 nodes and 200 VMs). Here each Output is
waited for once, and only a failure ends the wait early (as before, an Output faulted
because its resource failed to register is not an error of the program).

Installed only over the SDK version it was written against; any other keeps its own, as
does a run with CEPHKVM_SDK_DRAIN=stock (bench/preview_offline_scale.py --ab-drain).
"""

from __future__ import annotations

import asyncio
import os

from pulumi import _version
from pulumi.runtime import stack as _stack
from pulumi.runtime.settings import SETTINGS, _get_rpc_manager

FOR_VERSION = "3.260.0"


async def wait_for_rpcs(await_all_outstanding_tasks: bool = True) -> None:
    rpcs = _get_rpc_manager()
    while True:
        while rpcs.rpcs:
            await asyncio.sleep(0)
            try:
                await rpcs.rpcs.pop()
            except Exception as exn:
                if rpcs.unhandled_exception is not None:
                    raise exn from rpcs.unhandled_exception.with_traceback(rpcs.exception_traceback)
                raise
        if rpcs.unhandled_exception is not None:
            raise rpcs.unhandled_exception.with_traceback(rpcs.exception_traceback)
        if await_all_outstanding_tasks:
            await _drain_outputs()
        if not rpcs.rpcs:
            break


async def _drain_outputs() -> None:
    while True:
        with SETTINGS.lock:
            pending = list(SETTINGS.outputs)
            SETTINGS.outputs.clear()
        if not pending:
            return
        done, rest = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and isinstance(
                task.exception(), _stack.ResourceRegistrationFailed
            ):
                continue
            task.result()  # raises the program's failure, as the SDK's own loop does
        with SETTINGS.lock:
            SETTINGS.outputs.update(rest)


def install() -> None:
    if _version._VERSION == FOR_VERSION and os.environ.get("CEPHKVM_SDK_DRAIN") != "stock":
        _stack.wait_for_rpcs = wait_for_rpcs
