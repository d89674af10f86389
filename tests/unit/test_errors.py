"""Provider failures read as one paragraph; bugs keep their traceback."""

import os
import sys
import types

import pytest

from providers import errors
from providers.transport import CommandError

pytestmark = pytest.mark.unit


def test_an_operator_error_is_its_message_alone():
    err = CommandError("node3", "mkdir -p /mnt/cephfs", 1, "File exists")
    text = errors.operator_text(err)
    assert text == "node3: `mkdir -p /mnt/cephfs` exited 1: File exists\n"
    assert "Traceback" not in text


def test_a_bug_keeps_its_traceback_and_says_so():
    try:
        {}["missing"]
    except KeyError as err:
        text = errors.operator_text(err)
    assert text.startswith("Traceback") and "bug in cephkvm" in text


def test_debug_keeps_every_traceback(monkeypatch):
    monkeypatch.setenv("CEPHKVM_DEBUG", "1")
    try:
        raise RuntimeError("node1: something")
    except RuntimeError as err:
        assert errors.operator_text(err).startswith("Traceback")


def test_the_provider_servers_format_exc_gives_the_message(monkeypatch):
    import traceback

    server = types.ModuleType("__main__")
    server.__spec__ = types.SimpleNamespace(name="pulumi.dynamic.__main__")
    server.traceback = traceback
    monkeypatch.setitem(sys.modules, "__main__", server)
    errors.install()
    try:
        raise TimeoutError("timed out after 300s waiting for lab-vm1 to finish booting")
    except TimeoutError:
        assert (
            server.traceback.format_exc()
            == "timed out after 300s waiting for lab-vm1 to finish booting\n"
        )


def test_every_failure_the_providers_raise_is_the_one_type():
    """Refusals, node failures and timeouts are errors.Failure (whose text is the whole
    message); nothing in providers/ raises a bare RuntimeError or Exception."""
    import glob
    import re
    from providers import errors, transport

    assert issubclass(transport.TransportError, errors.Failure)
    assert issubclass(transport.CommandError, errors.Failure)
    assert issubclass(errors.Timeout, TimeoutError)
    for path in glob.glob(os.path.join(os.path.dirname(errors.__file__), "*.py")):
        text = open(path).read()
        assert not re.search(r"raise (RuntimeError|Exception|TimeoutError)\(", text), path
