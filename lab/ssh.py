"""SSH to lab nodes with the lab's own key and pinned host keys, nothing from ~/.ssh."""

import shlex
import subprocess

from . import const
from .util import CLEAN_ENV, sh


def keygen(path, comment):
    """A fresh ed25519 key pair at path (+ .pub); returns the public line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path)
    return path.with_name(path.name + ".pub").read_text().strip()


def client_key() -> str:
    """The lab's client key pair, kept across up/down; returns the public line."""
    pub = const.CLIENT_KEY.with_name(const.CLIENT_KEY.name + ".pub")
    if not (const.CLIENT_KEY.exists() and pub.exists()):
        keygen(const.CLIENT_KEY, "cklab-client")
    return pub.read_text().strip()


def write_known_hosts(nodes):
    """nodes: [{"name", "address", "host_key"}]; both name and address are pinned."""
    lines = [f"{n['name']},{n['address']} {n['host_key']}\n" for n in nodes]
    const.KNOWN_HOSTS.write_text("".join(lines))


def control_path(node_name: str):
    """Socket of the node's multiplexed master connection, or None if the path would be too
    long for a unix socket. It lives in the node's dir, so `down` removes it with the node."""
    path = const.node_dir(node_name) / "ssh-mux"
    return path if len(str(path)) < 100 else None


def _mux_opts(node: dict, known_hosts) -> list:
    # A new connection costs ~0.3-0.4 s here, a command over an open one ~0.01 s. A caller
    # with its own known_hosts must get a fresh handshake that checks the host key against
    # it, never a reused master.
    cp = control_path(node["name"]) if known_hosts is None else None
    if cp is None or not cp.parent.is_dir():
        return ["-o", "ControlPath=none"]
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={cp}", "-o", "ControlPersist=60"]


def close_master(node_name: str):
    cp = control_path(node_name)
    if cp and cp.exists():
        sh(
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            f"ControlPath={cp}",
            "-O",
            "exit",
            "lab",
            check=False,
            timeout=5,
        )


def ssh_argv(node: dict, known_hosts=None, timeout=5) -> list:
    """The ssh command line up to (not including) the remote command."""
    return [
        "ssh",
        "-F",
        "/dev/null",  # no user/system config can change the target
        "-i",
        str(const.CLIENT_KEY),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts or const.KNOWN_HOSTS}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "UpdateHostKeys=no",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={timeout}",
        # A master whose peer vanished (a partition) must end, not hang every command.
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=2",
        "-o",
        "LogLevel=ERROR",
        *_mux_opts(node, known_hosts),
        "-p",
        str(node.get("port", 22)),
        f"{node.get('user', 'root')}@{node['address']}",
    ]


def remote(cmd) -> str:
    """A list is quoted word by word; a string is passed as a shell snippet."""
    return cmd if isinstance(cmd, str) else shlex.join(str(c) for c in cmd)


def run(node: dict, cmd, check=False, timeout=60, input=None, known_hosts=None):
    argv = ssh_argv(node, known_hosts) + ["--", remote(cmd)]
    res = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, input=input, env=CLEAN_ENV
    )
    if check and res.returncode != 0:
        raise RuntimeError(
            f"{node['name']}: {remote(cmd)!r} failed ({res.returncode}): {res.stderr.strip()}"
        )
    return res
