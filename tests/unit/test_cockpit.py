"""Cockpit on a fake node without systemd: the account (ours only), its password as a
SHA-512 hash on stdin, D-Bus and cockpit-ws as direct daemons, drift, crash and re-run,
delete."""

import pytest

from providers import passwords
from providers.cockpit import MARK, WS, CockpitProvider
from providers import base
from tests.unit.fakes import Crash, FakeHost, Handlers, connection

pytestmark = pytest.mark.unit
PASSWORD = "Pw-0123456789abcdefXYZ.+"


class CockpitHost(FakeHost):
    HANDLERS = Handlers(FakeHost.HANDLERS)

    def __init__(self, systemd=False):
        super().__init__(packages=("cockpit-ws",), systemd=systemd)
        self.enabled: set = set()  # systemd units enabled
        self.users: dict = {}  # name -> (gecos, hash)
        self.certs = False
        self.sessions = 0  # processes of the account (a logged-in console)


COCKPIT = CockpitHost.HANDLERS


@COCKPIT.program("test")
def _test(host, command):
    if command.argv[1] == "-L":
        return "", 1  # no symlinks here
    if command.argv[1] != "-x":
        return FakeHost.HANDLERS.programs["test"](host, command)
    return "", 0 if command.argv[-1] == WS and "cockpit-ws" in host.packages else 1


@COCKPIT.program("systemctl")
def _systemctl(host, command):
    verb, unit = command.argv[1], command.argv[-1]
    if verb == "is-enabled":
        return "", 0 if unit in host.enabled else 1
    if verb in ("enable", "disable"):
        (host.enabled.add if verb == "enable" else host.enabled.discard)(unit)
    return "", 0


@COCKPIT.program("getent")
def _getent(host, command):
    db, user = command.argv[1], command.argv[2]
    if user not in host.users:
        return "", 2
    gecos, hashed = host.users[user]
    if db == "passwd":
        return f"{user}:x:2001:2001:{gecos}:/home/{user}:/bin/bash\n", 0
    return f"{user}:{hashed}:20000:0:99999:7:::\n", 0


@COCKPIT.program("useradd")
def _useradd(host, command):
    host.users[command.argv[-1]] = (command.argv[command.argv.index("--comment") + 1], "!")
    return "", 0


@COCKPIT.program("userdel")
def _userdel(host, command):
    if host.sessions:
        return f"userdel: user {command.argv[-1]} is currently used by process 4242", 8
    del host.users[command.argv[-1]]
    return "", 0


@COCKPIT.program("pgrep")
def _pgrep(host, _command):
    return ("4242\n", 0) if host.sessions else ("", 1)


@COCKPIT.program("pkill")
def _pkill(host, _command):
    host.sessions = 0
    return "", 0


@COCKPIT.program("chpasswd")
def _chpasswd(host, command):
    user, hashed = command.stdin.strip().split(":", 1)
    host.users[user] = (host.users[user][0], hashed)
    return "", 0


@COCKPIT.script("dbus-daemon --system --fork")
def _dbus(host, _command):
    host.running.add("dbus-daemon")
    return "", 0


@COCKPIT.script("setsid setpriv")
def _start_ws(host, _command):
    host.running.add("cockpit-ws")
    return "", 0


@COCKPIT.script("cockpit-wsinstance:640")
def _certs(host, command):
    if "cockpit-certificate-ensure" in command.script:
        host.certs = True
        return "", 0
    return "", 0 if host.certs else 1


@COCKPIT.program("python3")
def _login(host, command):
    user = command.argv[-1]
    if "cockpit-ws" not in host.running and "cockpit.socket" not in host.enabled:
        return "0\n", 0
    hashed = host.users.get(user, ("", ""))[1]
    ok = (
        hashed.startswith("$6$") and passwords.hashed(command.stdin, hashed.split("$")[2]) == hashed
    )
    return ("200" if ok and "libvirt" in host.groups.get(user, ()) else "401") + "\n", 0


@pytest.fixture
def node(monkeypatch):
    fake = CockpitHost()
    monkeypatch.setattr(base, "session", lambda props, **_: fake.session())
    return fake


def props(**kw):
    result = CockpitProvider().check(
        {},
        {
            "node": "node1",
            "connection": connection("node1"),
            "address": "192.0.2.11",
            "password": PASSWORD,
            "timeout": 2,
            **kw,
        },
    )
    assert not result.failures, result.failures
    return result.inputs


def test_create_makes_the_account_and_serves_the_console(node):
    outs = CockpitProvider().create(props()).outs
    gecos, hashed = node.users["cockpit-admin"]
    assert gecos == MARK and hashed.startswith("$6$")
    assert node.groups["cockpit-admin"] == {"libvirt"}
    assert {"dbus-daemon", "cockpit-ws"} <= node.running
    assert outs["url"] == "https://192.0.2.11:9090/" and outs["started"] == ["dbus"]
    assert not [line for line in node.log.lines if PASSWORD in line], "never on a command line"


def test_second_run_changes_nothing(node):
    provider = CockpitProvider()
    outs = provider.create(props()).outs
    node.log.clear()
    provider.update("node1", outs, props())
    assert node.changes == []


@pytest.mark.parametrize("step", range(1, 8))
def test_crash_at_step_n_then_rerun_converges(node, step):
    node.log.crash_at = step
    try:
        CockpitProvider().create(props())
    except Crash:
        pass
    CockpitProvider().create(props())
    assert node.users["cockpit-admin"][0] == MARK and "cockpit-ws" in node.running


def test_an_operators_user_of_that_name_is_refused(node):
    node.users["cockpit-admin"] = ("Jane", "$6$x$y")
    with pytest.raises(Exception, match="was not made by cephkvm"):
        CockpitProvider().create(props())
    assert node.users["cockpit-admin"] == ("Jane", "$6$x$y") and node.changes == []


def test_a_password_changed_by_hand_reads_as_down_and_is_set_back(node):
    provider = CockpitProvider()
    outs = provider.create(props()).outs
    node.users["cockpit-admin"] = (MARK, passwords.hashed("something else"))
    read = provider.read("node1", outs).outs
    assert read["ensure"] == "down"
    provider.update("node1", read, props())
    assert provider.read("node1", outs).outs["ensure"] == "up"


def test_delete_stops_what_it_started_and_removes_only_its_account(node):
    provider = CockpitProvider()
    outs = provider.create(props()).outs
    node.sessions = 3  # someone logged in: userdel would refuse
    provider.delete("node1", outs)
    assert not {"dbus-daemon", "cockpit-ws"} & node.running
    assert "cockpit-admin" not in node.users
    assert provider.read("node1", outs).id == ""


def test_missing_packages_are_named(node):
    node.packages.clear()
    with pytest.raises(Exception, match="Cockpit is not installed"):
        CockpitProvider().create(props())


@pytest.fixture
def systemd_node(monkeypatch):
    fake = CockpitHost(systemd=True)
    fake.dirs.add("/etc/systemd/system/cockpit.socket.d")
    monkeypatch.setattr(base, "session", lambda props, **_: fake.session())
    return fake


def test_under_systemd_the_socket_listens_on_the_address_and_goes_with_delete(systemd_node):
    provider = CockpitProvider()
    outs = provider.create(props()).outs
    drop_in = systemd_node.files["/etc/systemd/system/cockpit.socket.d/cephkvm.conf"]
    assert "ListenStream=192.0.2.11:9090" in drop_in
    assert outs["started"] == ["cockpit.socket"] and "cockpit.socket" in systemd_node.enabled
    systemd_node.log.clear()
    provider.update("node1", outs, props())
    assert systemd_node.changes == []
    provider.delete("node1", outs)
    assert "cockpit.socket" not in systemd_node.enabled
    assert "/etc/systemd/system/cockpit.socket.d/cephkvm.conf" not in systemd_node.files


def test_under_systemd_a_socket_enabled_before_stays_enabled(systemd_node):
    systemd_node.enabled.add("cockpit.socket")
    provider = CockpitProvider()
    outs = provider.create(props()).outs
    assert outs["started"] == []
    provider.delete("node1", outs)
    assert "cockpit.socket" in systemd_node.enabled, "the operator's Cockpit stays"
    assert "/etc/systemd/system/cockpit.socket.d/cephkvm.conf" not in systemd_node.files
