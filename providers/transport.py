"""SSH transport: the only module that talks to paramiko.

One connection per node per process, shared by every provider thread. Host keys are
verified against a pinned key or a known_hosts file (recorded on first contact when the
stack allows it). Commands are argument lists, joined with shlex; secrets are masked in
every error text.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import os
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field

import paramiko

from providers.errors import Failure

# An unreachable node is reported within 15 s: two TCP connects of 5 s, 0.5 s apart. Once
# the node answers, the SSH handshake may take longer (a loaded sshd).
CONNECT_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 15.0
CONNECT_ATTEMPTS = 2
# After a node could not be reached (or offered a wrong key), other resources of the same
# run on it fail at once, pointing at the first error, instead of each waiting again.
REFUSED_MEMORY = 30.0
COMMAND_TIMEOUT = 600.0
# Sessions open at once on one connection: OpenSSH refuses more than MaxSessions (default 10).
MAX_CHANNELS = 8
NO_EXIT_STATUS = -1  # what paramiko reports when a channel closes without one
# Every changing command runs holding this lock shared (`flock -s`); a run's first connection
# to a node waits until it can hold it exclusively: a step a killed run left in flight on the
# node (an OSD prepare, an image import) finishes before the next run starts there.
STEPS_LOCK = "/run/cephkvm.steps.lock"
STEPS_WAIT = 600  # seconds a new run waits for such a step


class TransportError(Failure):
    """A node could not be reached or authenticated."""


class HostKeyError(TransportError):
    """A node presented a key that is not the one we trust."""


class CommandError(Failure):
    """A remote command failed; the text carries command, exit code and stderr (masked)."""

    def __init__(self, node: str, command: str, exit_code: int, stderr: str):
        self.node, self.command, self.exit_code, self.stderr = node, command, exit_code, stderr
        tail = stderr.strip()[-2000:] or "(no stderr)"
        super().__init__(f"{node}: `{command}` exited {exit_code}: {tail}")


@dataclass(frozen=True)
class Host:
    """How to reach one node. Holds no secret: the private key is read from a file or
    passed per call."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    host_key: str | None = None  # pinned "ssh-ed25519 AAAA..."
    known_hosts: str | None = None  # file checked, and written on first contact
    trust_on_first_use: bool = False
    # The key the stack's state recorded when it first met the node: a fresh controller with
    # an empty known_hosts trusts it, not whatever answers.
    state_host_key: str | None = None

    @property
    def key_name(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass
class Result:
    stdout: str
    stderr: str
    exit_code: int


def mask(text: str, secrets) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def command_line(host: Host, argv: list[str]) -> str:
    """The exact shell line sent for argv; non-root users go through sudo."""
    argv = [str(a) for a in argv]
    if host.user != "root":
        argv = ["sudo", "-n", "--"] + argv
    return shlex.join(argv)


# --- host keys --------------------------------------------------------------------------


def parse_host_key(text: str) -> paramiko.PKey:
    parts = text.split()
    if len(parts) < 2:
        raise ValueError("a host key looks like 'ssh-ed25519 AAAA...'")
    return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))


def fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..."


class _VerifyPolicy(paramiko.MissingHostKeyPolicy):
    """Called only when the node's key is not already trusted."""

    _lock = threading.Lock()

    def __init__(self, host: Host):
        self.host = host

    def missing_host_key(self, client, hostname, key):
        host = self.host
        if (
            host.host_key
            or host.state_host_key
            or not host.trust_on_first_use
            or not host.known_hosts
        ):
            raise HostKeyError(
                f"{host.name} ({host.key_name}) offered an unknown {key.get_name()} host key "
                f"{fingerprint(key)}. Verify it out of band, then pin it as the node's host_key "
                f"in the stack config (or allow trust_on_first_use with a known_hosts file)."
            )
        with self._lock:
            _remember(host, key)


def _remember(host: Host, key: paramiko.PKey) -> None:
    """Append the key to known_hosts (0600), under a file lock so two provider processes
    meeting the node at once write one line."""
    path = os.path.abspath(host.known_hosts)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    line = f"{host.key_name} {key.get_name()} {key.get_base64()}\n"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        os.fchmod(f.fileno(), 0o600)
        f.seek(0)
        if line not in f.readlines():
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _trusted_keys(client: paramiko.SSHClient, host: Host) -> None:
    keys = client.get_host_keys()
    pin = host.host_key or host.state_host_key
    if pin:
        try:
            key = parse_host_key(pin)
        except (ValueError, paramiko.SSHException) as err:
            raise HostKeyError(
                f"{host.name}: the {_key_source(host)} cannot be parsed ({err}); "
                "copy it from `ssh-keyscan` without the host name"
            ) from None
        keys.add(host.key_name, key.get_name(), key)
    elif host.known_hosts and os.path.exists(host.known_hosts):
        keys.load(host.known_hosts)


def _key_source(host: Host) -> str:
    if host.host_key:
        return "pinned host_key in the stack config"
    if host.state_host_key:
        return "host key the stack's state recorded on first contact"
    return host.known_hosts or "known_hosts"


def _bad_key_message(host: Host, err: paramiko.BadHostKeyException) -> str:
    where = _key_source(host)
    fix = (
        f"update {where}"
        if host.host_key or not host.state_host_key
        else "pin the new key as the node's host_key in the stack config"
    )
    return (
        f"{host.name} ({host.key_name}) presented host key {fingerprint(err.key)} but "
        f"{fingerprint(err.expected_key)} is trusted ({where}). Refusing to connect. If the "
        f"node was reinstalled, verify the new key out of band and {fix}."
    )


# --- connections ------------------------------------------------------------------------


class Pool:
    """One paramiko client per (address, port, user), opened lazily, reused, and reopened
    when its connection died."""

    def __init__(self):
        self._lock = threading.Lock()
        self._clients: dict[tuple, paramiko.SSHClient] = {}
        self._node_locks: dict[tuple, threading.Lock] = {}
        self._slots: dict[tuple, threading.BoundedSemaphore] = {}
        self._refused: dict[tuple, tuple[float, TransportError]] = {}
        self._open: dict[tuple, int] = {}  # channels in use per connection
        self._facts: dict[tuple, dict] = {}

    def client(self, host: Host, private_key: str | None = None) -> paramiko.SSHClient:
        with self._node_lock(host):
            client = self._clients.get(_ident(host))
            transport = client.get_transport() if client else None
            if transport is None or not transport.is_active():
                first = _ident(host) not in self._clients
                self._refuse_again(host)
                try:
                    client = _connect(host, private_key)
                except TransportError as err:
                    self._refused[_ident(host)] = (time.monotonic(), err)
                    raise
                if first:  # a reconnect must not wait for this run's own steps
                    _wait_for_other_runs(client, host)
                self._clients[_ident(host)] = client
            return client

    def _refuse_again(self, host: Host) -> None:
        """A node refused moments ago (a wrong host key: for the whole run) is not tried
        again; the error says so in one line and points at the first one."""
        when, err = self._refused.get(_ident(host), (None, None))
        if err is None:
            return
        if isinstance(err, HostKeyError):
            raise HostKeyError(
                f"{host.name}: not contacted: its host key was refused (see the "
                f"first error about {host.name})"
            )
        if time.monotonic() - when < REFUSED_MEMORY:
            raise TransportError(
                f"{host.name}: not contacted: it could not be reached "
                f"{time.monotonic() - when:.0f}s ago (see the first error "
                f"about {host.name})"
            )
        del self._refused[_ident(host)]

    @contextlib.contextmanager
    def slot(self, host: Host):
        """Held while a session channel is open, so no node sees more than MAX_CHANNELS."""
        with self._lock:
            slots = self._slots.setdefault(_ident(host), threading.BoundedSemaphore(MAX_CHANNELS))
        with slots:
            self._count(host, 1)
            try:
                yield
            finally:
                self._count(host, -1)

    def _count(self, host: Host, step: int) -> None:
        with self._lock:
            self._open[_ident(host)] = self._open.get(_ident(host), 0) + step

    def busy(self, host: Host, own: int = 1) -> bool:
        """Other channels than the caller's own are open on host's connection."""
        with self._lock:
            return self._open.get(_ident(host), 0) > own

    def fact(self, host: Host, name: str, probe):
        """A fact of the node that does not change while a run lasts (its init system),
        asked once per provider process: probe() the first time, remembered after."""
        with self._lock:
            known = self._facts.setdefault(_ident(host), {})
            if name in known:
                return known[name]
        value = probe()
        with self._lock:
            known[name] = value
        return value

    def drop(self, host: Host, client: paramiko.SSHClient) -> None:
        """Forget a connection that stopped answering; the next command reconnects."""
        with self._node_lock(host):
            if self._clients.get(_ident(host)) is client:
                del self._clients[_ident(host)]
        client.close()

    def _node_lock(self, host: Host) -> threading.Lock:
        with self._lock:
            return self._node_locks.setdefault(_ident(host), threading.Lock())

    def close_all(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _ident(host: Host) -> tuple:
    return (host.address, host.port, host.user)


def _load_private_key(host: Host, private_key: str | None) -> dict:
    if private_key:
        for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                return {"pkey": cls.from_private_key(io.StringIO(private_key))}
            except (paramiko.SSHException, ValueError):
                continue
        raise TransportError(f"{host.name}: the SSH private key given for it cannot be parsed")
    if host.key_file:
        return {"key_filename": os.path.expanduser(host.key_file)}
    return {}


def _connect(host: Host, private_key: str | None) -> paramiko.SSHClient:
    last: Exception | None = None
    for attempt in range(CONNECT_ATTEMPTS):
        client = paramiko.SSHClient()
        try:
            _trusted_keys(client, host)
        except HostKeyError:
            client.close()
            raise
        client.set_missing_host_key_policy(_VerifyPolicy(host))
        try:
            client.connect(
                host.address,
                port=host.port,
                username=host.user,
                timeout=CONNECT_TIMEOUT,
                banner_timeout=HANDSHAKE_TIMEOUT,
                auth_timeout=HANDSHAKE_TIMEOUT,
                allow_agent=False,
                look_for_keys=False,
                **_load_private_key(host, private_key),
            )
            _no_delay(client)
            _log(f"connect {host.name}")
            return client
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as err:
            client.close()
            raise HostKeyError(_bad_key_message(host, err)) from None
        except paramiko.AuthenticationException as err:
            client.close()
            raise TransportError(
                f"{host.name}: SSH login as {host.user} refused ({err}). Check the node's "
                f"user and key in the stack config."
            ) from None
        except (OSError, socket.timeout, paramiko.SSHException) as err:
            client.close()
            last = err
            time.sleep(0.5 * 2**attempt)
    raise TransportError(
        f"{host.name}: cannot reach {host.key_name} over SSH after {CONNECT_ATTEMPTS} "
        f"attempts ({last}). Check the node's address and that sshd runs."
    )


def _no_delay(client: paramiko.SSHClient) -> None:
    """Each command's few small packets go out at once. With Nagle's algorithm on, one
    waited for the node's delayed ACK: 45 ms a command on the lab, 3 ms without."""
    with contextlib.suppress(OSError, AttributeError):
        client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _wait_for_other_runs(client: paramiko.SSHClient, host: Host) -> None:
    """Until no changing command of another run is in flight on the node."""
    line = command_line(host, ["flock", "-x", "-w", str(STEPS_WAIT), STEPS_LOCK, "true"])
    chan = client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
    _, err, rc = _exec(chan, line, None, STEPS_WAIT + 30)
    if _sudo_refused(host, Result("", err, rc)):
        raise TransportError(
            f"{host.name}: {host.user} may not run commands as root without a password "
            f"({err.strip()}). Give {host.user} passwordless sudo on the node."
        )
    if rc == 1:
        raise TransportError(
            f"{host.name}: a step of another cephkvm run is still running there after "
            f"{STEPS_WAIT}s (it holds {STEPS_LOCK}; see `fuser -v {STEPS_LOCK}` on the node). "
            "Wait for it to end, or stop it, then run `pulumi up` again."
        )
    if rc != 0:
        raise TransportError(
            f"{host.name}: cannot take the node's run lock with flock "
            f"(exit {rc}: {err.strip()}); install "
            "util-linux on the node"
        )


POOL = Pool()


# --- commands ---------------------------------------------------------------------------


def _log(line: str) -> None:
    """Append to $CEPHKVM_SSH_LOG: how bench/ counts connections and commands."""
    path = os.environ.get("CEPHKVM_SSH_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@dataclass
class Session:
    """A node plus the secrets needed to reach it; what providers run commands through."""

    host: Host
    private_key: str | None = None
    secrets: tuple = field(default_factory=tuple)
    pool: Pool = field(default_factory=lambda: POOL)

    @property
    def name(self) -> str:
        return self.host.name

    def run(
        self,
        argv: list,
        *,
        stdin: bytes | str | None = None,
        check: bool = True,
        change: bool = False,
        secrets: tuple = (),
        timeout: float = COMMAND_TIMEOUT,
    ) -> Result:
        """Run argv on the node. `change` marks commands that modify the node (counted by
        bench/ to prove a no-op `up` changes nothing)."""
        # -o: the command's children (a daemon it starts) must not inherit the lock.
        line = command_line(self.host, ["flock", "-s", "-o", STEPS_LOCK, *argv] if change else argv)
        all_secrets = tuple(self.secrets) + tuple(secrets)
        shown = mask(command_line(self.host, argv), all_secrets)
        _log(f"{'change' if change else 'read'} {self.host.name} {shown}")
        for attempt in (1, 2):
            with self.pool.slot(self.host):
                chan = self._channel()
                try:
                    out, err, rc = _exec(chan, line, stdin, timeout)
                except _NotStarted as exc:  # the node refused the exec: nothing ran
                    if attempt == 1:
                        time.sleep(0.5)
                        continue
                    raise TransportError(f"{self.host.name}: `{shown}` failed: {exc}.") from None
                except (OSError, EOFError, paramiko.SSHException, socket.timeout) as exc:
                    if not change and attempt == 1 and not isinstance(exc, socket.timeout):
                        continue  # a read is asked again, on a new connection if it broke
                    hint = (
                        " It may have run before the connection broke; run `pulumi up` "
                        "again (every step checks the node first)."
                        if change
                        else ""
                    )
                    raise TransportError(
                        f"{self.host.name}: `{shown}` failed: {exc}.{hint}"
                    ) from None
            # No exit status: the channel closed under the command (its connection dropped,
            # or a signal ended it). A read is asked again; a change may have run.
            if rc != NO_EXIT_STATUS or change or attempt == 2:
                break
        if rc == NO_EXIT_STATUS:
            err = (
                err
                or "the command ended without an exit status (killed by a signal, or "
                "its SSH channel closed)"
            )
        result = Result(out, mask(err, all_secrets), rc)
        if check and rc != 0:
            raise CommandError(self.host.name, shown, rc, result.stderr)
        return result

    def _channel(self, own: int = 1) -> paramiko.Channel:
        """A new session channel. Nothing has run on it yet, so when the connection died or
        the node refused the channel, trying again (on a new connection if needed) is safe.
        own: the channels the caller counts itself (a command holds its slot; libvirt not)."""
        last: Exception | None = None
        for attempt in range(CONNECT_ATTEMPTS):
            client = self.pool.client(self.host, self.private_key)
            try:
                return client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                last = exc
                # No answer at all: the connection is dead, unless other commands are still
                # running on it (a busy node is slow to open one more channel; dropping the
                # connection would cut theirs: "Channel closed" seen on the lab).
                if "Timeout" in str(exc) and not self.pool.busy(self.host, own):
                    self.pool.drop(self.host, client)
                time.sleep(0.5 * 2**attempt)
        raise TransportError(
            f"{self.host.name}: the node refused or dropped {CONNECT_ATTEMPTS} SSH sessions in "
            f"a row ({last or 'closed'}). Check its sshd (MaxSessions, MaxStartups) and load."
        )

    def host_key(self) -> str:
        """The key the node presented (already verified when the connection opened)."""
        key = self.pool.client(self.host, self.private_key).get_transport().get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"

    def fact(self, name: str, probe):
        """probe(), asked once per node and provider process (Pool.fact)."""
        return self.pool.fact(self.host, name, probe)

    def ok(self, argv: list, **kw) -> bool:
        """True when argv exits 0: how facts ask yes/no questions. No exit status is no
        answer (a read dropped twice), never a "no": a missing mon store and an unreachable
        one are different facts."""
        result = self.run(argv, check=False, **kw)
        if result.exit_code == NO_EXIT_STATUS or _sudo_refused(self.host, result):
            shown = mask(command_line(self.host, argv), tuple(self.secrets))
            raise CommandError(self.host.name, shown, result.exit_code, result.stderr)
        return result.exit_code == 0

    def put(
        self,
        path: str,
        data: bytes | str,
        *,
        mode: str = "0644",
        owner: str = "root:root",
        secret: bool = False,
    ) -> None:
        """Write a file atomically with mode and owner (through sudo when needed)."""
        tmp = f"{path}.cephkvm-tmp"
        script = (
            f"umask 077 && cat > {shlex.quote(tmp)} && chmod {shlex.quote(mode)} {shlex.quote(tmp)}"
            f" && chown {shlex.quote(owner)} {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} "
            f"{shlex.quote(path)}"
        )
        self.run(
            ["sh", "-c", script],
            stdin=data,
            change=True,
            secrets=(data if isinstance(data, str) else data.decode(errors="ignore"),)
            if secret
            else (),
        )

    def put_if_changed(
        self,
        path: str,
        text: str,
        *,
        mode: str = "0644",
        owner: str = "root:root",
        secret: bool = False,
    ) -> bool:
        """Write only when the content differs, so a converged node sees no change command.
        Mode and owner are compared too, so a keyring left world-readable is repaired."""
        if self.get(path) == text and self._mode_owner(path) == (mode.lstrip("0") or "0", owner):
            return False
        self.put(path, text, mode=mode, owner=owner, secret=secret)
        return True

    def _mode_owner(self, path: str) -> tuple:
        out = self.run(["stat", "-c", "%a %U:%G", path], check=False).stdout.split()
        return (out[0], out[1]) if len(out) == 2 else ("", "")

    def get(self, path: str) -> str | None:
        """A file's text, or None when there is no such file. A file that exists but cannot
        be read raises: absent and unreadable are different answers (a missing identity
        file is drift, an unreadable one is a fault to report)."""
        argv = ["cat", "--", path]
        result = self.run(argv, check=False)
        if result.exit_code == 0:
            return result.stdout
        if _sudo_refused(self.host, result):
            pass  # not an answer about the file: reported below
        elif not self.ok(["test", "-e", path]) and not self.ok(["test", "-L", path]):
            return None
        raise CommandError(
            self.name, command_line(self.host, argv), result.exit_code, result.stderr
        )


# What sudo says when it refuses to run a command (it exits 1, as a plain "no" does); its
# warnings ("unable to resolve host") come before commands it does run.
SUDO_REFUSALS = (
    "a password is required",
    "is not in the sudoers",
    "is not allowed to execute",
    "a terminal is required",
    "no tty present",
)


def _sudo_refused(host: Host, result: Result) -> bool:
    """sudo itself said no: a fault to report, never an answer."""
    return (
        host.user != "root"
        and result.exit_code == 1
        and any(refusal in result.stderr for refusal in SUDO_REFUSALS)
    )


class _NotStarted(paramiko.SSHException):
    """sshd refused the exec request on a live connection: it answers before the command
    starts, so none ran (a lost connection leaves that open)."""


def _exec(chan: paramiko.Channel, line: str, stdin, timeout: float):
    try:
        try:
            chan.exec_command(line)
        except (EOFError, paramiko.SSHException) as exc:
            if chan.get_transport() is not None and chan.get_transport().is_active():
                raise _NotStarted(str(exc) or "exec refused") from None
            raise
        if stdin is not None:
            chan.sendall(stdin.encode() if isinstance(stdin, str) else stdin)
        _end_input(chan)
        out, err = _drain(chan, time.monotonic() + timeout)
        return out.decode(errors="replace"), err.decode(errors="replace"), chan.recv_exit_status()
    finally:
        chan.close()


def _end_input(chan: paramiko.Channel) -> None:
    """EOF on the command's input. paramiko's shutdown_write sends it after releasing the
    channel's lock: when the command has already ended, the server's CLOSE can be answered
    in between, our EOF then follows our CLOSE, and OpenSSH drops the whole connection with
    every command on it ("ieof packet referred to nonexistent channel", seen on the lab).
    Sent under the lock, it goes out before any CLOSE paramiko answers with."""
    with chan.lock:
        if chan.closed:
            return  # paramiko's own close sent EOF then CLOSE, in that order
        eof = chan._send_eof()  # None when already sent
        if eof is not None:
            chan.transport._send_user_message(eof)


# OpenSSH sends a command's exit status when the command exits, and may send the last of its
# output after it (a `getent passwd` read as empty on a busy lab): the output ends at EOF. A
# background child still holding the output open is not waited for longer than this.
EOF_GRACE = 2.0


def _drain(chan, deadline: float) -> tuple[bytes, bytes]:
    out, err = bytearray(), bytearray()
    grace = None  # until when EOF is waited for, once the exit status is in
    while True:
        if chan.recv_ready():
            out += chan.recv(65536)
        elif chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        elif chan.exit_status_ready():
            grace = grace or time.monotonic() + EOF_GRACE
            if chan.eof_received or time.monotonic() > grace:
                return bytes(out), bytes(err)
            select.select([chan], [], [], 0.1)  # the rest of the output, or EOF
        elif time.monotonic() > deadline:
            raise socket.timeout("command timed out")
        elif chan.eof_received:  # the status is on its way; the channel stays readable
            chan.status_event.wait(0.5)
        else:
            select.select([chan], [], [], 0.5)


# --- libvirt over SSH ---------------------------------------------------------------------
# The controller reaches a node's libvirtd through its pooled paramiko connection (below).
# libvirtd itself, migrating peer to peer, reaches the destination over qemu+libssh with
# the stack's migration key and a known_hosts file written from the pinned key.


def libvirt_uri(host: Host, key_file: str, known_hosts: str) -> str:
    """qemu+libssh URI that authenticates with key_file and checks known_hosts strictly."""
    from urllib.parse import quote

    port = "" if host.port == 22 else f":{host.port}"
    query = (
        f"keyfile={quote(key_file, safe='/')}&known_hosts={quote(known_hosts, safe='/')}"
        "&known_hosts_verify=normal&sshauth=privkey"
    )
    return f"qemu+libssh://{quote(host.user)}@{host.address}{port}/system?{query}"


def known_hosts_line(host: Host) -> str | None:
    """The known_hosts line that pins host's key, for libvirt's libssh transport."""
    pin = host.host_key or host.state_host_key
    if pin:
        parse_host_key(pin)  # refuse a pin that cannot be parsed, as above
        return f"{host.key_name} {' '.join(pin.split()[:2])}\n"
    if host.known_hosts and os.path.exists(host.known_hosts):
        with open(host.known_hosts) as f:
            lines = [ln for ln in f if ln.split(" ", 1)[0] in (host.key_name, host.address)]
        return "".join(lines) or None
    return None


class open_libvirt:
    """`with open_libvirt(host, private_key) as conn:` a libvirt connection to the node's
    system libvirtd, carried by the node's pooled SSH connection (its host key already
    verified): a channel runs libvirt's own `virt-ssh-helper qemu:///system` there, and a
    thread joins it to a private local socket that libvirt-python connects to. No process
    is forked (forking inside the provider's gRPC server broke connections) and no reply
    size stalls (qemu+libssh never delivered one over 4 KiB)."""

    def __init__(self, host: Host, private_key: str | None = None):
        self.session = Session(host, private_key=private_key)
        self.conn = self._tmp = self._chan = None

    def __enter__(self):
        import tempfile

        import libvirt

        # Errors reach the caller as exceptions; libvirt's default handler would also print
        # each one (even an expected "domain not found") to stderr.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        node = self.session
        self._tmp = tempfile.mkdtemp(prefix="cephkvm-libvirt-")
        path = os.path.join(self._tmp, "sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        self._chan = node._channel(own=0)
        node.pool._count(node.host, 1)  # open for the whole block: a drop would cut it
        self._chan.exec_command(command_line(node.host, ["virt-ssh-helper", "qemu:///system"]))
        threading.Thread(
            target=_join, args=(listener, self._chan), daemon=True, name=f"libvirt-{node.name}"
        ).start()
        try:
            self.conn = libvirt.open(f"qemu+unix:///system?socket={path}")
        except libvirt.libvirtError as err:
            self._close()
            raise TransportError(
                f"{node.name}: libvirt over SSH failed: "
                f"{' '.join(str(err).split())[-500:]}. Check that libvirtd "
                "runs there (NodePrep starts it)."
            ) from None
        _log(f"libvirt {node.name}")
        return self.conn

    def __exit__(self, *exc):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # a dead connection has nothing left to close
                pass
        self._close()

    def _close(self):
        if self._chan is not None:
            self._chan.close()
            self.session.pool._count(self.session.host, -1)
            self._chan = None
        if self._tmp:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)


def _join(listener: socket.socket, chan: paramiko.Channel) -> None:
    """Carry bytes both ways between libvirt's local socket and the node's helper until
    either side closes."""
    try:
        local, _ = listener.accept()
    except OSError:
        return
    finally:
        listener.close()
    try:
        while True:
            ready, _, _ = select.select([local, chan], [], [], 1.0)
            if local in ready:
                data = local.recv(1 << 16)
                if not data:
                    break
                chan.sendall(data)
            if chan in ready:
                data = chan.recv(1 << 16)
                if not data:
                    break
                local.sendall(data)
            if chan.closed:
                break
    except OSError:
        pass
    finally:
        local.close()
        chan.close()
