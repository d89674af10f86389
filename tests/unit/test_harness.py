"""The harness that drives the real CLI (tests/cli.py), independent of how the suite starts."""

import signal
import subprocess
import sys

import pytest

from tests.cli import ROOT

pytestmark = pytest.mark.unit

CHILD_SIGNALS = """
import subprocess
import tests.cli
status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout
print(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")))
"""


def test_what_the_harness_starts_takes_sigint_also_from_a_background_job():
    """A background job starts with SIGINT ignored; a `pulumi` inheriting that waited 5 s
    for the language host it stops at every preview, up and destroy."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_SIGNALS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert not int(proc.stdout, 16) & 1 << (signal.SIGINT - 1), proc.stdout
