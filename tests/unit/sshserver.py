"""A real SSH server on loopback for the unit tier (paramiko server mode). Exec requests run
through /bin/sh on this machine as the current user, in a temporary directory."""

from __future__ import annotations

import socket
import subprocess
import threading

import paramiko


class _Sessions:
    """Open session channels on one connection, refused past a limit like OpenSSH's
    MaxSessions."""

    def __init__(self, limit: int):
        self.limit, self.open, self.peak = limit, 0, 0
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            self.peak = max(self.peak, self.open)
            return True

    def give(self):
        with self.lock:
            self.open -= 1


class _Handler(paramiko.ServerInterface):
    def __init__(self, client_key: paramiko.PKey, sessions: _Sessions, refuse_execs: list):
        self.client_key = client_key
        self.sessions = sessions
        self.refuse_execs = refuse_execs

    def check_auth_publickey(self, username, key):
        ok = key.get_base64() == self.client_key.get_base64()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username):
        return "publickey"

    def check_channel_request(self, kind, chanid):
        if kind != "session":
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        return (
            paramiko.OPEN_SUCCEEDED
            if self.sessions.take()
            else paramiko.OPEN_FAILED_RESOURCE_SHORTAGE
        )

    def check_channel_exec_request(self, channel, command):
        if self.refuse_execs[0] > 0:  # as sshd does past MaxSessions, or out of resources
            self.refuse_execs[0] -= 1
            return False
        threading.Thread(target=self._execute, args=(channel, command), daemon=True).start()
        return True

    def _execute(self, channel, command: bytes):
        try:
            _execute(channel, command)
        finally:
            self.sessions.give()


def _execute(channel, command: bytes):
    stdin = bytearray()
    while True:
        chunk = channel.recv(65536)
        if not chunk:
            break
        stdin += chunk
    proc = subprocess.run(
        ["/bin/sh", "-c", command.decode()], input=bytes(stdin), capture_output=True
    )
    channel.sendall(proc.stdout)
    channel.sendall_stderr(proc.stderr)
    if proc.returncode >= 0:  # killed by a signal: OpenSSH sends no exit status then
        channel.send_exit_status(proc.returncode)
    channel.close()


class SshServer:
    def __init__(
        self,
        client_key: paramiko.PKey,
        host_key: paramiko.PKey | None = None,
        max_sessions: int = 10,
    ):
        self.host_key = host_key or paramiko.ECDSAKey.generate()
        self.max_sessions = max_sessions
        self.sessions: list[_Sessions] = []
        self.client_key = client_key
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.refuse_execs = [0]  # how many exec requests to refuse next
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def public_key(self) -> str:
        return f"{self.host_key.get_name()} {self.host_key.get_base64()}"

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = paramiko.Transport(conn)
            t.add_server_key(self.host_key)
            self.transports.append(t)
            self.sessions.append(_Sessions(self.max_sessions))
            try:
                t.start_server(
                    server=_Handler(self.client_key, self.sessions[-1], self.refuse_execs)
                )
            except (OSError, EOFError, paramiko.SSHException):
                pass  # a client that refused our host key hangs up mid-handshake

    def drop_connections(self):
        """Hang up on every client, as a restarted sshd or a broken link would."""
        for t in self.transports:
            t.close()

    def close(self):
        self.sock.close()
        self.drop_connections()
