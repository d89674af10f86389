"""The Python SDK's own debug messages, kept in the program.

The SDK sends each resource's registration steps to the engine as debug messages, about four
a resource, each a blocking RPC the engine shows only under `pulumi --debug`: 4,400 round
trips in an unchanged preview of 50 nodes and 500 VMs, about a tenth of its time
(bench/README). Only the SDK's runtime modules lose them; `pulumi.log.debug` stays for
everyone else. CEPHKVM_SDK_DEBUG=stock keeps them (to debug the SDK itself).
"""

from __future__ import annotations

import importlib
import os

from pulumi import log

RUNTIME = [
    importlib.import_module(f"pulumi.runtime.{name}")
    for name in ("resource", "rpc", "rpc_manager", "stack", "invoke")
]


class _Quiet:
    """The `log` module as the SDK's runtime sees it: everything but debug."""

    def __getattr__(self, name):
        return getattr(log, name)

    @staticmethod
    def debug(*_args, **_kwargs) -> None:
        return None


def install() -> None:
    if os.environ.get("CEPHKVM_SDK_DEBUG") == "stock":
        return
    for module in RUNTIME:
        if getattr(module, "log", None) is log:
            module.log = _Quiet()
