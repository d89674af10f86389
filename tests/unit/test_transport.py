import io
import os
import socket
import threading

import paramiko
import pytest

from providers import transport
from providers.transport import CommandError, Host, HostKeyError, Pool, Session
from tests.unit.sshserver import SshServer

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def steps_lock(tmp_path, monkeypatch):
    """The node's run lock, in a place this user can write (the server is this machine)."""
    path = str(tmp_path / "steps.lock")
    monkeypatch.setattr(transport, "STEPS_LOCK", path)
    return path


@pytest.fixture
def client_key():
    return paramiko.ECDSAKey.generate()


@pytest.fixture
def server(client_key):
    srv = SshServer(client_key)
    yield srv
    srv.close()


def pem(key: paramiko.PKey) -> str:
    buf = io.StringIO()
    key.write_private_key(buf)
    return buf.getvalue()


def session(server, client_key, **host):
    defaults = {
        "name": "node1",
        "address": "127.0.0.1",
        "port": server.port,
        "host_key": server.public_key,
    }
    return Session(Host(**{**defaults, **host}), private_key=pem(client_key), pool=Pool())


def test_command_line_quotes_every_argument_and_uses_sudo_for_other_users():
    root = Host(name="n", address="h")
    user = Host(name="n", address="h", user="cephsvc")
    assert transport.command_line(root, ["echo", "a b;rm -rf /"]) == "echo 'a b;rm -rf /'"
    assert transport.command_line(user, ["id"]) == "sudo -n -- id"


def test_pinned_key_runs_commands_over_one_reused_connection(server, client_key):
    node = session(server, client_key)
    assert node.run(["echo", "hello world"]).stdout == "hello world\n"
    assert node.run(["sh", "-c", "cat"], stdin="piped").stdout == "piped"
    assert server.connections == 1


def test_the_connection_sends_small_packets_at_once(server, client_key):
    """TCP_NODELAY: with Nagle's algorithm a command waited for the node's delayed ACK (45 ms
    a command on the lab against 3 ms)."""
    node = session(server, client_key)
    node.run(["true"])
    sock = node.pool.client(node.host, node.private_key).get_transport().sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_failure_carries_command_exit_code_and_stderr_with_secrets_masked(server, client_key):
    node = session(server, client_key)
    with pytest.raises(CommandError) as err:
        node.run(["sh", "-c", "echo token=s3cret >&2; exit 7"], secrets=("s3cret",))
    text = str(err.value)
    assert "exited 7" in text and "token=***" in text and "node1" in text
    assert "s3cret" not in text


def test_changed_host_key_is_refused_with_how_to_fix(server, client_key):
    other = paramiko.ECDSAKey.generate()
    node = session(server, client_key, host_key=f"{other.get_name()} {other.get_base64()}")
    with pytest.raises(HostKeyError) as err:
        node.run(["true"])
    assert "Refusing to connect" in str(err.value)
    assert server.host_key.fingerprint in str(err.value)


def test_unknown_key_is_refused_without_trust_on_first_use(server, client_key, tmp_path):
    node = session(server, client_key, host_key=None, known_hosts=str(tmp_path / "kh"))
    with pytest.raises(HostKeyError, match="unknown"):
        node.run(["true"])


def test_first_contact_is_recorded_and_enforced_after(server, client_key, tmp_path):
    known = str(tmp_path / "known_hosts")
    node = session(server, client_key, host_key=None, known_hosts=known, trust_on_first_use=True)
    node.run(["true"])
    assert server.public_key.split()[1] in open(known).read()
    impostor = SshServer(client_key)
    try:
        with open(known) as f:
            line = f.read().replace(f"[127.0.0.1]:{server.port}", f"[127.0.0.1]:{impostor.port}")
        with open(known, "w") as f:
            f.write(line)
        moved = session(
            impostor, client_key, host_key=None, known_hosts=known, trust_on_first_use=True
        )
        with pytest.raises(HostKeyError, match="Refusing"):
            moved.run(["true"])
    finally:
        impostor.close()


def test_first_contact_writes_known_hosts_0600_once(server, client_key, tmp_path):
    known = str(tmp_path / "cfg" / "known_hosts")
    nodes = [
        session(server, client_key, host_key=None, known_hosts=known, trust_on_first_use=True)
        for _ in range(4)
    ]
    threads = [threading.Thread(target=n.run, args=(["true"],)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert oct(os.stat(known).st_mode & 0o777) == "0o600"
    assert len(open(known).read().splitlines()) == 1


def test_a_fresh_controller_trusts_the_key_in_state_not_whatever_answers(
    server, client_key, tmp_path
):
    """known_hosts is empty (a new laptop), the state recorded the real node's key: an
    impostor at the node's address is refused, the real node is accepted."""
    impostor = SshServer(client_key)
    try:
        fresh = dict(
            host_key=None,
            known_hosts=str(tmp_path / "empty"),
            trust_on_first_use=True,
            state_host_key=server.public_key,
        )
        with pytest.raises(HostKeyError, match="recorded on first contact") as err:
            session(impostor, client_key, **fresh).run(["true"])
        assert "pin the new key as the node's host_key" in str(err.value)
        assert not os.path.exists(tmp_path / "empty"), "nothing learned from the impostor"
        assert session(server, client_key, **fresh).run(["echo", "ok"]).stdout == "ok\n"
    finally:
        impostor.close()


def test_a_pin_in_config_wins_over_the_key_in_state(server, client_key):
    other = paramiko.ECDSAKey.generate()
    node = session(server, client_key, state_host_key=f"{other.get_name()} {other.get_base64()}")
    assert node.run(["true"]).exit_code == 0


def test_put_writes_atomically_with_mode(server, client_key, tmp_path):
    node = session(server, client_key)
    owner = f"{os.getuid()}:{os.getgid()}"
    path = str(tmp_path / "keyring")
    node.put(path, "secret-key", mode="0600", owner=owner, secret=True)
    assert open(path).read() == "secret-key"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert node.get(path) == "secret-key"
    assert node.get(str(tmp_path / "missing")) is None


def test_unparsable_pinned_key_is_reported_by_node(client_key, server):
    node = session(server, client_key, host_key="ssh-ed25519 AA")
    with pytest.raises(
        HostKeyError, match="node1: the pinned host_key in the stack config cannot be parsed"
    ):
        node.run(["true"])


def test_unreachable_node_error_says_what_to_check(client_key, server):
    node = Session(
        Host(name="node9", address="127.0.0.1", port=1, host_key=server.public_key), pool=Pool()
    )
    transport.CONNECT_ATTEMPTS, saved = 1, transport.CONNECT_ATTEMPTS
    try:
        with pytest.raises(transport.TransportError, match="node9: cannot reach"):
            node.run(["true"])
    finally:
        transport.CONNECT_ATTEMPTS = saved


def test_parallel_commands_stay_under_the_nodes_session_limit(server, client_key):
    node = session(server, client_key)
    results = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(node.run(["sh", "-c", f"sleep 0.2; echo {i}"]).stdout)
        )
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(f"{i}\n" for i in range(20))
    assert server.connections == 1
    assert server.sessions[0].peak == transport.MAX_CHANNELS


def test_a_refused_session_is_asked_for_again(client_key):
    server = SshServer(client_key, max_sessions=2)  # below what the pool will open
    try:
        node = session(server, client_key)
        done = []
        threads = [
            threading.Thread(
                target=lambda: done.append(node.run(["sh", "-c", "sleep 0.3; echo ok"]).stdout)
            )
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert done == ["ok\n"] * 4
        assert server.sessions[0].peak == 2
    finally:
        server.close()


def test_a_dropped_connection_is_reopened_for_the_next_command(server, client_key):
    node = session(server, client_key)
    assert node.run(["echo", "one"]).stdout == "one\n"
    server.drop_connections()
    assert node.run(["echo", "two"]).stdout == "two\n"
    assert server.connections == 2


def test_a_read_that_ends_without_an_exit_status_is_asked_again(server, client_key, tmp_path):
    """A channel closed under a command (a signal, a dropped connection) leaves no answer:
    a read is run once more, and said so plainly when that happens twice."""
    node = session(server, client_key)
    mark = tmp_path / "killed-once"
    once = f"if [ -e {mark} ]; then echo answered; else touch {mark}; kill -9 $PPID; fi"
    assert node.run(["sh", "-c", once]).stdout == "answered\n"
    tries = tmp_path / "tries"
    always = f"echo x >> {tries}; kill -9 $PPID"
    with pytest.raises(Exception, match="ended without an exit status"):
        node.run(["sh", "-c", always])
    assert tries.read_text() == "x\nx\n"
    with pytest.raises(Exception, match="ended without an exit status"):
        node.ok(["sh", "-c", always])  # no answer is not a "no"


def test_a_change_whose_exec_the_node_refused_is_asked_again_once(
    server, client_key, tmp_path, steps_lock
):
    """sshd answers an exec request before the command starts: a refusal ran nothing, so a
    change is sent again (seen on the lab as "Channel closed" during a bring-up)."""
    node = session(server, client_key)
    node.run(["true"], change=True)  # connected (its first exec waits for other runs)
    runs = tmp_path / "runs"
    server.refuse_execs[0] = 1
    node.run(["sh", "-c", f"echo x >> {runs}"], change=True)
    assert runs.read_text() == "x\n"
    server.refuse_execs[0] = 2
    with pytest.raises(Exception, match="Channel closed"):
        node.run(["sh", "-c", f"echo x >> {runs}"], change=True)
    assert runs.read_text() == "x\n"


def test_changing_commands_hold_the_nodes_steps_lock_shared(server, client_key, steps_lock):
    node = session(server, client_key)
    out = node.run(
        ["sh", "-c", f"flock -n -x {steps_lock} true && echo free || echo held"], change=True
    ).stdout
    assert out.strip() == "held", "a changing command runs under the shared lock"
    assert (
        node.run(["sh", "-c", f"flock -n -x {steps_lock} true && echo free"]).stdout.strip()
        == "free"
    ), "a read does not"


def test_a_new_run_waits_for_a_step_left_in_flight_by_another_run(
    server, client_key, steps_lock, tmp_path
):
    import subprocess
    import time

    # A killed run's step: still running on the node, holding the lock shared.
    marker = tmp_path / "step-done"
    step = subprocess.Popen(["flock", "-s", steps_lock, "sh", "-c", f"sleep 1.5; touch {marker}"])
    try:
        while subprocess.run(["flock", "-n", "-x", steps_lock, "true"]).returncode == 0:
            time.sleep(0.05)  # until the step holds the lock
        node = session(server, client_key)
        node.run(["true"])  # the first connection waits for the step
        assert marker.exists(), "connected before the other run's step had finished"
    finally:
        step.wait()


def test_a_daemon_a_step_started_does_not_hold_the_lock(server, client_key, steps_lock, tmp_path):
    """ceph-mon, ceph-fuse: started by a changing command, running long after it."""
    node = session(server, client_key)
    pid_file = str(tmp_path / "daemon.pid")
    node.run(
        ["sh", "-c", f"sleep 30 >/dev/null 2>&1 </dev/null & echo $! > {pid_file}"], change=True
    )
    try:
        free = node.run(["flock", "-n", "-x", steps_lock, "true"], check=False)
        assert free.exit_code == 0, "the daemon kept the node's steps lock"
    finally:
        node.run(["sh", "-c", f"kill $(cat {pid_file})"])


def test_a_step_that_never_ends_is_reported_by_name(server, client_key, steps_lock, monkeypatch):
    import subprocess

    monkeypatch.setattr(transport, "STEPS_WAIT", 1)
    step = subprocess.Popen(["flock", "-s", steps_lock, "sleep", "30"])
    try:
        with pytest.raises(
            transport.TransportError,
            match="node1: a step of another cephkvm run is still running there",
        ):
            session(server, client_key).run(["true"])
    finally:
        step.kill()
        step.wait()


@pytest.fixture
def silent_port():
    """A loopback port that never completes a connect: a listener whose backlog is full
    drops every further SYN, the way a partitioned node does (no packet leaves loopback)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(1)
    if probe.connect_ex(listener.getsockname()) == 0:
        pytest.skip("this kernel completes connects past a full backlog")
    probe.close()
    yield listener.getsockname()[1]
    for sock in fillers + [listener]:
        sock.close()


def test_an_unreachable_node_is_reported_within_15s_and_once(server, silent_port):
    import time

    pool = Pool()
    node = Session(
        Host(name="node9", address="127.0.0.1", port=silent_port, host_key=server.public_key),
        pool=pool,
    )
    start = time.monotonic()
    with pytest.raises(transport.TransportError, match="node9: cannot reach"):
        node.run(["true"])
    assert time.monotonic() - start < 15
    start = time.monotonic()
    with pytest.raises(transport.TransportError, match="node9: not contacted.*first error"):
        Session(node.host, pool=pool).run(["true"])
    assert time.monotonic() - start < 1, "the next resource on node9 does not wait again"


def test_a_learned_host_key_is_state_only_and_reaches_the_session():
    from providers import base

    conn = {"name": "n1", "address": "192.0.2.1", "known_hosts": "/k", "trust_on_first_use": True}
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBv"
    old = {"connection": conn, "admin": [{"connection": conn}]}
    new = {
        "connection": {**conn, "state_host_key": key},
        "admin": [{"connection": {**conn, "state_host_key": key}}],
    }
    assert base.delta(old, new, ("connection", "admin")) == []
    assert base.session(new).host.state_host_key == key
    unknown = {"connection": {**conn, "state_host_key": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}}
    assert base.session(unknown).host.state_host_key is None  # preview: not known yet


def test_sudo_saying_no_is_a_fault_not_an_answer(server, client_key, tmp_path, monkeypatch):
    """A service account whose sudo asks for a password: `test -e` and `cat` exit 1 as a
    plain "no such file" would; a read must not take a store or a key for gone."""
    fake = tmp_path / "sudo"
    fake.write_text("#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    node = session(server, client_key, user="cephsvc")
    with pytest.raises(Exception, match="cephsvc may not run commands as root"):
        node.ok(["test", "-e", "/etc/hostname"])  # said once, when the node is reached
    monkeypatch.setattr(transport, "_wait_for_other_runs", lambda client, host: None)
    node = session(server, client_key, user="cephsvc")
    with pytest.raises(Exception, match="a password is required"):
        node.ok(["test", "-e", "/etc/hostname"])
    with pytest.raises(Exception, match="a password is required"):
        node.get("/etc/hostname")
    # sudo's warnings are no refusal: it ran the command, whose "no" is an answer
    fake.write_text("#!/bin/sh\necho 'sudo: unable to resolve host n1' >&2\nshift\nexec \"$@\"\n")
    assert not node.ok(["test", "-e", "/nonexistent"]) and node.get("/nonexistent") is None


def test_the_input_eof_is_sent_under_the_channel_lock_and_never_after_close():
    """OpenSSH drops the whole connection when an EOF follows the channel's CLOSE (seen on
    the lab: every command on that node's connection failed). paramiko answers a server's
    CLOSE under the channel's lock; the EOF must go out under it too, or not at all."""

    class Channel:
        def __init__(self, closed=False):
            self.lock, self.closed, self.eof_sent, self.sent = threading.Lock(), closed, False, []
            self.transport = self

        def _send_eof(self):
            if self.eof_sent:
                return None
            self.eof_sent = True
            return "EOF"

        def _send_user_message(self, message):
            self.sent.append((message, self.lock.locked()))

    chan = Channel()
    transport._end_input(chan)
    transport._end_input(chan)
    assert chan.sent == [("EOF", True)]
    closed = Channel(closed=True)
    transport._end_input(closed)
    assert closed.sent == []


def test_the_admin_session_is_the_first_admin_node_that_answers(server, client_key):
    """Pools, filesystems and mounts run `ceph` on the first admin node that answers; when
    none does, the message names each one tried."""
    from providers.ceph_cli import admin_session

    def access(name, port):
        conn = {"name": name, "address": "127.0.0.1", "port": port}
        return {
            "connection": {**conn, "host_key": server.public_key},
            "ssh_private_key": pem(client_key),
        }

    node = admin_session({"admin": [access("osd1", 1), access("osd2", server.port)]})
    assert node.host.name == "osd2" and node.run(["echo", "up"]).stdout == "up\n"
    with pytest.raises(transport.TransportError) as err:
        admin_session({"admin": [access("osd1", 1), access("osd3", 9)]})
    assert "no admin node reachable, tried osd1, osd3" in str(err.value)


class LateOutput:
    """A channel whose exit status arrives before the last of the output, as OpenSSH may
    send them: the output shows after `steps` more looks, then EOF."""

    def __init__(self, steps: int, eof: bool = True):
        self.steps, self.eof, self.eof_received = steps, eof, False
        self.status_event = threading.Event()
        self.status_event.set()
        self.pipe = os.pipe()  # never readable: select() waits its timeout

    def fileno(self):
        return self.pipe[0]

    def close(self):
        for fd in self.pipe:
            os.close(fd)

    def recv_ready(self):
        self.steps -= 1
        return self.steps == 0

    def recv(self, _n):
        self.eof_received = self.eof
        return b"cephsvc:x:1000:1000::/home/cephsvc:/bin/sh\n"

    def recv_stderr_ready(self):
        return False

    def exit_status_ready(self):
        return True


def test_output_sent_after_the_exit_status_is_read_until_eof():
    chan = LateOutput(steps=3)
    out, err = transport._drain(chan, deadline=1e18)
    chan.close()
    assert out.decode().split(":")[5] == "/home/cephsvc" and err == b""


def test_output_held_open_by_a_background_child_is_waited_for_only_a_grace(monkeypatch):
    monkeypatch.setattr(transport, "EOF_GRACE", 0.2)
    chan = LateOutput(steps=2, eof=False)
    out, _ = transport._drain(chan, deadline=1e18)
    chan.close()
    assert out.startswith(b"cephsvc:")
