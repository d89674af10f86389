"""How a provider failure reads: one paragraph, no Python traceback.

Pulumi's dynamic-provider server turns any exception into `traceback.format_exc()`. Every
message cephkvm raises already says node, step, command, exit code, stderr (masked) and
what to do, so the traceback only buries it. Inside that server process, its `traceback`
is replaced by one whose format_exc gives the message alone; a programming error (a
KeyError, a TypeError, ...) keeps its traceback, marked as a cephkvm bug. CEPHKVM_DEBUG=1
keeps every traceback.
"""

from __future__ import annotations

import os
import sys
import traceback


class Failure(RuntimeError):
    """What every provider raises for an operator: a refusal, a node's failure, a timeout.
    Its text is the whole message (node, step, command, exit code, stderr, what to do)."""


class Timeout(Failure, TimeoutError):
    """A wait ran out (base.wait_until)."""


BUGS = (
    AttributeError,
    AssertionError,
    IndexError,
    KeyError,
    NameError,
    TypeError,
    UnboundLocalError,
    ZeroDivisionError,
)


def operator_text(exc: BaseException) -> str:
    if os.environ.get("CEPHKVM_DEBUG") or isinstance(exc, BUGS) or not str(exc):
        note = (
            ""
            if os.environ.get("CEPHKVM_DEBUG")
            else ("This is a bug in cephkvm; please report it with the traceback above.\n")
        )
        return "".join(traceback.format_exception(exc)) + note
    return f"{exc}\n"


class _Traceback:
    """Stands in for the traceback module in pulumi.dynamic's server."""

    def format_exc(self, *args, **kwargs) -> str:
        exc = sys.exc_info()[1]
        return operator_text(exc) if exc is not None else traceback.format_exc(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(traceback, name)


def install() -> None:
    server = sys.modules.get("__main__")
    spec = getattr(server, "__spec__", None)
    if (
        getattr(spec, "name", "") == "pulumi.dynamic.__main__"
        and getattr(server, "traceback", None) is traceback
    ):
        server.traceback = _Traceback()
