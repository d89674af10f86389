"""The provider process ends when its engine is gone: a real child process that believes it
is Pulumi's dynamic provider, watching a real listening socket that then closes."""

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.unit
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = textwrap.dedent("""
    import importlib.machinery, sys, time
    sys.modules["__main__"].__spec__ = importlib.machinery.ModuleSpec(
        "pulumi.dynamic.__main__", None)
    sys.path.insert(0, {root!r})
    from providers import lifeline
    lifeline.INTERVAL = 0.1
    lifeline.start()
    print("watching", flush=True)
    time.sleep(60)
""")


def test_the_provider_process_exits_once_its_engine_stops_listening():
    engine = socket.socket()
    engine.bind(("127.0.0.1", 0))
    engine.listen(16)
    port = engine.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=ROOT), f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "watching"
        time.sleep(0.5)
        assert child.poll() is None, "alive while the engine listens"
        engine.close()
        assert child.wait(timeout=10) == 3
        assert "the Pulumi engine is gone" in child.stderr.read()
    finally:
        child.kill()
        engine.close()


def test_it_exits_even_when_its_stderr_is_a_pipe_nobody_reads_any_more():
    """The CLI that read the provider's stderr is the process that was killed."""
    engine = socket.socket()
    engine.bind(("127.0.0.1", 0))
    engine.listen(16)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=ROOT), f"127.0.0.1:{engine.getsockname()[1]}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "watching"
        child.stderr.close()  # the reader is gone
        engine.close()
        assert child.wait(timeout=10) == 3
    finally:
        child.kill()
        engine.close()


def test_outside_the_dynamic_provider_nothing_is_watched():
    from providers import lifeline

    assert lifeline.engine_address() is None
