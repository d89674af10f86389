"""A recording fake of a node for the unit tier: it keeps a little host state (packages,
daemons, files) and answers the commands providers send, so tests assert outcomes on that
state, and can crash a provider at its Nth changing command."""
from __future__ import annotations

import re
import shlex

from providers.transport import CommandError, Host, Pool, Result, Session, command_line


class Crash(Exception):
    """Stands for the provider process being killed."""


class FakeHost:
    def __init__(self, name="node1", *, packages=(), running=(), systemd=False, kvm=False):
        self.name = name
        self.packages = set(packages)
        self.running = set(running)
        self.systemd = systemd
        self.kvm = kvm
        self.files: dict[str, str] = {}
        self.dirs: set[str] = {"/root"}
        self.modes: dict[str, tuple[str, str]] = {}  # path -> (mode, owner)
        self.homes = {"root": "/root"}
        self.groups: dict[str, set] = {}  # user -> groups
        self.log: list[tuple[str, str]] = []  # (kind, line)
        self.crash_at: int | None = None  # raise Crash before the Nth change command

    @property
    def changes(self):
        return [line for kind, line in self.log if kind == "change"]

    def session(self) -> "FakeSession":
        return FakeSession(self)


class FakeSession(Session):
    def __init__(self, host: FakeHost):
        # A pool per fake node: facts (Pool.fact) are remembered per node, as on a real one.
        super().__init__(Host(name=host.name, address="192.0.2.1"),
                         pool=host.__dict__.setdefault("pool", Pool()))
        self.fake = host

    def host_key(self):
        return "ssh-ed25519 AAAAFAKE"

    def run(self, argv, *, stdin=None, check=True, change=False, secrets=(), timeout=0):
        line = command_line(self.host, argv)
        kind = "change" if change else "read"
        if change and self.fake.crash_at is not None:
            if len(self.fake.changes) + 1 >= self.fake.crash_at:
                self.fake.crash_at = None
                raise Crash(line)
        self.fake.log.append((kind, line))
        out, rc = _answer(self.fake, [str(a) for a in argv], stdin)
        if check and rc:
            raise CommandError(self.host.name, line, rc, "fake failure")
        return Result(out, "", rc)


def _answer(host: FakeHost, argv: list[str], stdin):
    script = argv[2] if argv[:2] == ["sh", "-c"] else ""
    if "echo hostname=" in script:
        return (f"hostname={host.name}\narch=x86_64\nos=Debian GNU/Linux 12 (bookworm)\n"
                f"init={'systemd' if host.systemd else 'direct'}\n"
                f"kvm_device={'yes' if host.kvm else 'no'}\ncpu_virt=yes\n"), 0
    if "dpkg-query" in script:
        wanted = shlex.split(script.split("for p in ", 1)[1].split("; do", 1)[0])
        return "".join(f"{p}\n" for p in wanted if p not in host.packages), 0
    if argv[:3] == ["test", "-d", "/run/systemd/system"]:
        return "", 0 if host.systemd else 1
    if "readlink /proc/$pid/exe" in script:
        daemon = re.search(r'exe\)" = (\S+) \]', script).group(1).rsplit("/", 1)[1]
        if "kill" not in script:
            return "", 0 if daemon in host.running else 1
        host.running.discard(daemon)
        return "", 0
    if argv[0].startswith("/usr/sbin/") and argv[-1] == "-d":
        host.running.add(argv[0].rsplit("/", 1)[1])
        return "", 0
    if argv[:1] == ["systemctl"]:
        unit = argv[-1]
        if argv[1] == "is-active":
            return "", 0 if unit in host.running else 3
        (host.running.add if argv[1] == "enable" else host.running.discard)(unit)
        return "", 0
    if argv[:2] == ["id", "-nG"]:
        return " ".join([argv[2], *sorted(host.groups.get(argv[2], ()))]) + "\n", 0
    if argv[:2] == ["usermod", "-aG"]:
        host.groups.setdefault(argv[3], set()).add(argv[2])
        return "", 0
    if argv[:2] == ["gpasswd", "-d"]:
        host.groups.get(argv[2], set()).discard(argv[3])
        return "", 0
    if argv[:1] == ["env"] and "apt-get" in argv:
        host.packages.update(argv[argv.index("--no-install-recommends") + 1:])
        return "", 0
    files = _files(host, argv, stdin)
    if files is not None:
        return files
    raise AssertionError(f"fake host does not know the command {argv}")


def _files(host: FakeHost, argv: list[str], stdin):
    """Files and directories: reading, atomic writes (Session.put), hashes, removal."""
    script = argv[2] if argv[:2] == ["sh", "-c"] else ""
    if argv[:2] == ["getent", "passwd"]:
        home = host.homes.get(argv[2])
        return (f"{argv[2]}:x:1000:1000::{home}:/bin/sh\n", 0) if home else ("", 2)
    if argv[:2] == ["cat", "--"]:
        return (host.files[argv[2]], 0) if argv[2] in host.files else ("", 1)
    if script.startswith("umask 077 && cat > "):
        words = shlex.split(script)
        path, mode, owner = words[-1], words[words.index("chmod") + 1], \
            words[words.index("chown") + 1]
        if path.rsplit("/", 1)[0] not in host.dirs:
            return "", 1
        host.files[path] = stdin if isinstance(stdin, str) else stdin.decode()
        host.modes[path] = (mode, owner)
        return "", 0
    if argv[:2] == ["sha256sum", "--"]:
        import hashlib
        text = host.files.get(argv[2])
        return (f"{hashlib.sha256(text.encode()).hexdigest()}  {argv[2]}\n", 0) \
            if text is not None else ("", 1)
    if argv[:1] == ["test"] and argv[1] in ("-d", "-e"):
        found = argv[2] in host.dirs or (argv[1] == "-e" and argv[2] in host.files)
        return "", 0 if found else 1
    if argv[:2] == ["install", "-d"]:
        host.dirs.add(argv[-1])
        return "", 0
    if argv[:3] == ["rm", "-f", "--"]:
        host.files.pop(argv[3], None)
        return "", 0
    return None
