"""Recording fakes of nodes for the unit tier.

A fake node is some host state plus the handler set that answers commands from it. Its
RecordingSession records every command (argv, stdin, change) in a Journal, answers from the
handler that claims the command, and fails the test on a command no handler claims: a
default answer would let a test pass on a command nobody thought about. Tests assert
outcomes on the state (packages, daemons, files) or on the journal, and can crash a provider
at its Nth changing command.

FakeHost below is the plain Debian node NodePrep, Node and MigrationAccess see;
ceph_fakes.CephWorld and test_cloud_vm's VM host are handler sets on the same base.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from dataclasses import dataclass, replace
from typing import Callable

from providers.transport import CommandError, Host, Pool, Result, Session

HOST_KEY = "ssh-ed25519 AAAAFAKE"
CAPTURED = os.path.join(os.path.dirname(__file__), "captured")


def captured(name: str) -> str:
    """A real command's output, kept in tests/unit/captured/ under the command's name."""
    with open(os.path.join(CAPTURED, name)) as f:
        return f.read()


def connection(name: str, address: str = "192.0.2.1") -> dict:
    """A node's `connection` input as the stack config gives it, its host key pinned."""
    return {"name": name, "address": address, "host_key": "ssh-ed25519 AAAA"}


class Crash(Exception):
    """Stands for the provider process being killed."""


class UnclaimedCommand(AssertionError):
    """A provider sent a command no handler of the fake node answers."""


# Every unclaimed command of the running test, also when the provider caught the error:
# conftest fails the test on any.
UNCLAIMED: list = []


@dataclass(frozen=True)
class Command:
    """One command a provider sent to a fake node."""

    node: str
    argv: tuple
    stdin: str | None
    change: bool

    @property
    def line(self) -> str:
        return shlex.join(self.argv)

    @property
    def script(self) -> str:
        """The script of `sh -c SCRIPT`, else ''."""
        return self.argv[2] if self.argv[:2] == ("sh", "-c") else ""

    def after(self, words: int) -> "Command":
        """The command a wrapper runs (`timeout 15 stat ...` -> `stat ...`)."""
        return replace(self, argv=self.argv[words:])


class Journal(list):
    """The commands sent to the fake nodes that share it, in order."""

    def __init__(self):
        super().__init__()
        self.crash_at: int | None = None  # raise Crash before the Nth changing command

    def record(self, command: Command) -> None:
        if command.change and self.crash_at is not None and len(self.changes) + 1 >= self.crash_at:
            self.crash_at = None
            raise Crash(command.line)
        self.append(command)

    @property
    def lines(self) -> list[str]:
        return [c.line for c in self]

    @property
    def changes(self) -> list[str]:
        return [c.line for c in self if c.change]

    @property
    def stdin(self) -> list[str]:
        """What was written to the commands' standard input."""
        return [c.stdin for c in self if c.stdin is not None]


# What a handler answers: the command's output and exit code. A failing command's output is
# its stderr too. None: not this handler's command.
Answer = tuple[str, int]
Handler = Callable[..., Answer | None]


class Handlers:
    """A handler set: one fake's answers, found by program (argv[0]) or, for `sh -c`, by a
    phrase of the script (the first phrase registered that the script holds)."""

    def __init__(self, *included: "Handlers"):
        self.programs: dict[str, Handler] = {}
        self.scripts: list[tuple[str, Handler]] = []
        for other in included:
            self.programs.update(other.programs)
            self.scripts += other.scripts

    def program(self, *names: str):
        def register(handler: Handler) -> Handler:
            self.programs.update(dict.fromkeys(names, handler))
            return handler

        return register

    def script(self, phrase: str):
        def register(handler: Handler) -> Handler:
            self.scripts.append((phrase, handler))
            return handler

        return register

    def answer(self, fake, command: Command) -> Answer | None:
        if command.script:
            return next(
                (
                    handler(fake, command)
                    for phrase, handler in self.scripts
                    if phrase in command.script
                ),
                None,
            )
        handler = self.programs.get(command.argv[0])
        return handler(fake, command) if handler else None


class FakeNode:
    """What every fake node has: a name, the journal it records into, the handler set that
    answers for it, and a Pool of its own (facts are remembered per node, as on a real
    one)."""

    HANDLERS: Handlers

    def __init__(self, name: str, journal: Journal | None = None):
        self.name = name
        self.log = journal if journal is not None else Journal()
        self.pool = Pool()

    @property
    def changes(self) -> list[str]:
        return self.log.changes

    def session(self, host: Host | None = None, private_key: str | None = None):
        return RecordingSession(
            self, host or Host(name=self.name, address="192.0.2.1"), private_key
        )


class RecordingSession(Session):
    """A Session whose commands reach a fake node: recorded, then answered by its handler
    set; a command none claims fails the test, naming it."""

    def __init__(self, fake: FakeNode, host: Host, private_key: str | None = None):
        super().__init__(host, private_key=private_key, pool=fake.pool)
        self.fake = fake

    def host_key(self):
        return HOST_KEY

    def run(self, argv, *, stdin=None, check=True, change=False, secrets=(), timeout=0):
        if list(argv[:3]) == ["python3", "-", "ceph"]:  # ceph_cli.ceph: the CLI, lighter
            argv, stdin = argv[2:], None
        command = Command(self.fake.name, tuple(str(a) for a in argv), _text(stdin), change)
        self.fake.log.record(command)
        answer = self.fake.HANDLERS.answer(self.fake, command)
        if answer is None:
            UNCLAIMED.append(command)
            raise UnclaimedCommand(f"fake {self.fake.name} has no handler for {list(argv)}")
        out, rc = answer
        if check and rc:
            raise CommandError(self.host.name, command.line, rc, f"fake failure: {out}")
        return Result(out, "" if rc == 0 else out, rc)


def _text(stdin) -> str | None:
    return stdin.decode() if isinstance(stdin, bytes) else stdin


def put_target(command: Command) -> tuple[str, str, str] | None:
    """(path, mode, owner) of a Session.put, else None."""
    if not command.script.startswith("umask 077 && cat > "):
        return None
    words = shlex.split(command.script.replace("&&", " "))
    return words[-1], words[words.index("chmod") + 1], words[words.index("chown") + 1]


def stat_mode(mode: str) -> str:
    """A mode as `stat -c %a` prints it: 0600 -> 600."""
    return mode.lstrip("0") or "0"


# Session.put on a fake that keeps only what its files hold (`fake.files`), not their modes.
CONTENT_WRITES = Handlers()


@CONTENT_WRITES.script("umask 077 && cat > ")
def _write_content(fake, command: Command):
    fake.files[put_target(command)[0]] = command.stdin
    return "", 0


# --- a plain node -----------------------------------------------------------------------


class FakeHost(FakeNode):
    """A Debian node with packages, daemons, users' groups and files."""

    HANDLERS = Handlers()

    def __init__(self, name="node1", *, packages=(), running=(), systemd=False, kvm=False):
        super().__init__(name)
        self.packages = set(packages)
        self.running = set(running)
        self.systemd = systemd
        self.kvm = kvm
        self.files: dict[str, str] = {}
        self.dirs: set[str] = {"/root"}
        self.modes: dict[str, tuple[str, str]] = {}  # path -> (mode, owner)
        self.homes = {"root": "/root"}
        self.groups: dict[str, set] = {}  # user -> groups


HOST = FakeHost.HANDLERS


@HOST.script("echo hostname=")
def _node_facts(host: FakeHost, _command):
    return (
        f"hostname={host.name}\narch=x86_64\nos=Debian GNU/Linux 12 (bookworm)\n"
        f"init={'systemd' if host.systemd else 'direct'}\n"
        f"kvm_device={'yes' if host.kvm else 'no'}\ncpu_virt=yes\n"
    ), 0


@HOST.script("dpkg-query")
def _missing_packages(host: FakeHost, command: Command):
    wanted = shlex.split(command.script.split("for p in ", 1)[1].split("; do", 1)[0])
    return "".join(f"{p}\n" for p in wanted if p not in host.packages), 0


@HOST.script("readlink /proc/$pid/exe")
def _direct_daemon(host: FakeHost, command: Command):
    """services.is_running and stop for a daemon without systemd."""
    daemon = re.search(r"readlink -f (\S+)\)", command.script).group(1).rsplit("/", 1)[1]
    if "kill" not in command.script:
        return "", 0 if daemon in host.running else 1
    host.running.discard(daemon)
    return "", 0


@HOST.program("/usr/sbin/libvirtd", "/usr/sbin/virtlogd")
def _start_direct(host: FakeHost, command: Command):
    if command.argv[-1] != "-d":
        return None
    host.running.add(command.argv[0].rsplit("/", 1)[1])
    return "", 0


@HOST.program("systemctl")
def _systemctl(host: FakeHost, command: Command):
    verb, unit = command.argv[1], command.argv[-1]
    if verb == "is-active":
        return "", 0 if unit in host.running else 3
    (host.running.add if verb == "enable" else host.running.discard)(unit)
    return "", 0


@HOST.program("id")
def _groups_of(host: FakeHost, command: Command):
    user = command.argv[2]
    return " ".join([user, *sorted(host.groups.get(user, ()))]) + "\n", 0


@HOST.program("usermod")
def _join_group(host: FakeHost, command: Command):
    host.groups.setdefault(command.argv[3], set()).add(command.argv[2])
    return "", 0


@HOST.program("gpasswd")
def _leave_group(host: FakeHost, command: Command):
    host.groups.get(command.argv[2], set()).discard(command.argv[3])
    return "", 0


@HOST.program("env")
def _apt_get_install(host: FakeHost, command: Command):
    if "apt-get" not in command.argv:
        return None
    argv = command.argv
    host.packages.update(argv[argv.index("--no-install-recommends") + 1 :])
    return "", 0


@HOST.program("getent")
def _passwd_entry(host: FakeHost, command: Command):
    user = command.argv[2]
    home = host.homes.get(user)
    return (f"{user}:x:1000:1000::{home}:/bin/sh\n", 0) if home else ("", 2)


@HOST.program("cat")
def _cat(host: FakeHost, command: Command):
    path = command.argv[-1]
    return (host.files[path], 0) if path in host.files else ("", 1)


@HOST.script("umask 077 && cat > ")
def _put(host: FakeHost, command: Command):
    path, mode, owner = put_target(command)
    if path.rsplit("/", 1)[0] not in host.dirs:
        return "", 1
    host.files[path] = command.stdin
    host.modes[path] = (stat_mode(mode), owner)
    return "", 0


@HOST.program("stat")
def _stat_mode(host: FakeHost, command: Command):
    """Session.put_if_changed's look at a file's mode and owner."""
    if command.argv[1:3] != ("-c", "%a %U:%G"):
        return None
    mode = host.modes.get(command.argv[-1])
    return (f"{mode[0]} {mode[1]}\n", 0) if mode else ("", 1)


@HOST.program("sha256sum")
def _sha256sum(host: FakeHost, command: Command):
    path = command.argv[-1]
    text = host.files.get(path)
    if text is None:
        return f"sha256sum: {path}: No such file or directory", 1
    return f"{hashlib.sha256(text.encode()).hexdigest()}  {path}\n", 0


@HOST.program("test")
def _test(host: FakeHost, command: Command):
    flag, path = command.argv[1:3]
    if flag == "-d":
        found = path in host.dirs or path == "/run/systemd/system" and host.systemd
    elif flag == "-e":
        found = path in host.dirs or path in host.files
    elif flag == "-L":
        found = False  # no symlinks on a fake
    else:
        return None
    return "", 0 if found else 1


@HOST.program("install")
def _make_dir(host: FakeHost, command: Command):
    if command.argv[1] != "-d":
        return None
    host.dirs.add(command.argv[-1])
    return "", 0


@HOST.program("rm")
def _remove(host: FakeHost, command: Command):
    if command.argv[:3] != ("rm", "-f", "--"):
        return None
    for path in command.argv[3:]:
        host.files.pop(path, None)
    return "", 0
