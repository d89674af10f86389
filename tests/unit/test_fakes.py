"""The recording fake node itself: what it records, and that it answers nothing it was not
told about."""

import pytest

from providers.transport import CommandError
from tests.unit import fakes
from tests.unit.fakes import Crash, FakeHost, UnclaimedCommand

pytestmark = pytest.mark.unit


def test_every_command_is_recorded_with_its_stdin_and_change_mark():
    host = FakeHost()
    session = host.session()
    session.put("/root/note", "hello\n", mode="0640")
    assert session.ok(["test", "-e", "/root/note"])
    put, test = host.log
    assert put.change and put.stdin == "hello\n" and put.node == "node1"
    assert not test.change and test.argv == ("test", "-e", "/root/note")
    assert host.changes == [put.line] and host.files["/root/note"] == "hello\n"
    assert host.modes["/root/note"] == ("640", "root:root")


def test_a_command_no_handler_claims_fails_naming_its_argv():
    session = FakeHost().session()
    with pytest.raises(UnclaimedCommand, match=r"\['reboot', '-f'\]"):
        session.run(["reboot", "-f"], check=False)
    assert [c.line for c in fakes.UNCLAIMED] == ["reboot -f"]
    fakes.UNCLAIMED.clear()  # this test's own: the autouse check would fail it


def test_a_failing_command_raises_unless_unchecked():
    session = FakeHost().session()
    assert session.run(["cat", "--", "/nowhere"], check=False).exit_code == 1
    with pytest.raises(CommandError, match="cat -- /nowhere"):
        session.run(["cat", "--", "/nowhere"])


def test_the_journal_crashes_before_the_nth_change():
    host = FakeHost()
    host.log.crash_at = 2
    session = host.session()
    session.run(["install", "-d", "/srv"], change=True)
    with pytest.raises(Crash, match="install -d /srv/a"):
        session.run(["install", "-d", "/srv/a"], change=True)
    assert host.dirs == {"/root", "/srv"} and host.log.crash_at is None
