"""Cockpit: the web console with its Virtual machines page (cockpit-machines, which talks to
libvirt through libvirt-dbus) on one KVM node, for one account cephkvm makes.

Cockpit logs in through PAM with a password, and refuses root; the account is this
resource's own (marked in its GECOS field, so delete never removes an operator's user), in
group libvirt, with the stack's generated password (LoginPassword) set as a SHA-512 crypt
hash through `chpasswd -e` on stdin. Under systemd, cockpit.socket listens on the node's
address (a drop-in); without systemd, the system D-Bus (started if none runs) and cockpit-ws
itself, as cockpit-wsinstance with its own TLS certificate, run as direct daemons.
"""

from __future__ import annotations

import os
import shlex
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, passwords, services, web_login
from providers.errors import Failure
from providers.schema.node import CockpitInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/node.py CockpitInputs
# outputs: url, started (what this resource started: direct daemons, or cockpit.socket)
INPUTS = CockpitInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
SECRET_OUTPUTS = ["password"]

MARK = "Cockpit (cephkvm)"  # the account's GECOS: made by this resource
WS = "/usr/lib/cockpit/cockpit-ws"
CERTS = "/etc/cockpit/ws-certs.d"
DROP_IN = "/etc/systemd/system/cockpit.socket.d/cephkvm.conf"
DBUS = services.Daemon(
    "dbus",
    ("sh", "-c", "mkdir -p /run/dbus && exec /usr/bin/dbus-daemon --system --fork"),
    "/run/dbus/pid",
    "/usr/bin/dbus-daemon",
)


class CockpitProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        return CreateResult(props["node"], {**props, **_converge(props, self.node, {})})

    def read(self, id_, props):
        found = _observe(props, self.node)
        return ReadResult(id_ if found else "", {**props, **found} if found else {})

    def update(self, _id, olds, news):
        return UpdateResult({**news, **_converge(news, self.node, olds)})

    def delete(self, _id, props):
        node = self.node
        systemd = services.has_systemd(node)
        if systemd:
            if node.get(DROP_IN) is not None:
                node.run(["rm", "-f", "--", DROP_IN], change=True)
                node.run(["systemctl", "daemon-reload"], change=True)
            if "cockpit.socket" in (props.get("started") or []):
                node.run(["systemctl", "disable", "--now", "cockpit.socket"], change=True)
            elif node.ok(["systemctl", "is-enabled", "--quiet", "cockpit.socket"]):
                # enabled before cephkvm: it stays, back on its own address
                node.run(["systemctl", "restart", "cockpit.socket"], change=True)
        else:
            services.stop(node, ws_daemon(props), systemd)
            if "dbus" in (props.get("started") or []):
                services.stop(node, DBUS, systemd)
        if _account(node, props["user"]) == "ours":
            _end_sessions(props, node)
            node.run(["userdel", "--remove", props["user"]], change=True)


def _end_sessions(props: dict, node) -> None:
    """The account's console sessions (cockpit-bridge and what it started) end first:
    userdel refuses a user that still runs processes."""
    user = props["user"]
    if not node.ok(["pgrep", "-u", user]):
        return
    node.run(["pkill", "-KILL", "-u", user], change=True, check=False)
    base.wait_until(
        lambda: not node.ok(["pgrep", "-u", user]),
        timeout=props["timeout"],
        what=f"the processes of {user} to end",
    )


def url(props: dict) -> str:
    host = f"[{props['address']}]" if ":" in props["address"] else props["address"]
    return f"https://{host}:{props['port']}/"


def ws_daemon(props: dict) -> services.Daemon:
    """cockpit-ws run directly: as cockpit-wsinstance, on the node's address, its own TLS."""
    start = (
        "setsid setpriv --reuid=cockpit-wsinstance --regid=cockpit-wsinstance --init-groups "
        f"{WS} --address {shlex.quote(props['address'])} --port {int(props['port'])} "
        "</dev/null >/dev/null 2>&1 & echo $! > /run/cockpit-ws.pid"
    )
    return services.Daemon("cockpit.socket", ("sh", "-c", start), "/run/cockpit-ws.pid", WS)


def _converge(props: dict, node, olds: dict) -> dict:
    if not node.ok(["test", "-x", WS]):
        raise Failure(
            f"{props['node']}: Cockpit is not installed ({WS} is missing); cephkvm installs "
            "cockpit-ws, cockpit-system and cockpit-machines with cephkvm:kvm.cockpit: run "
            "`pulumi up` again once the node's packages are in"
        )
    _ensure_account(props, node)
    started = _ensure_served(props, node, olds)
    base.wait_until(
        lambda: _login(props, node) == 200,
        timeout=props["timeout"],
        what=f"{props['user']} to log in to Cockpit at {url(props)}",
        report=lambda: f"the last answer was HTTP {_login(props, node) or 'none'}",
    )
    return {"url": url(props), "started": sorted(set(olds.get("started") or []) | started)}


def _account(node, user: str) -> str:
    """ "ours" (made by this resource), "other" (an operator's), or "" (none)."""
    found = node.run(["getent", "passwd", user], check=False)
    if found.exit_code != 0:
        return ""
    return "ours" if found.stdout.split(":")[4:5] == [MARK] else "other"


def _ensure_account(props: dict, node) -> None:
    user = props["user"]
    which = _account(node, user)
    if which == "other":
        raise Failure(
            f"{props['node']}: user {user} exists and was not made by cephkvm; Cockpit's "
            "account gets a password set by the stack, so choose another "
            "cephkvm:kvm.cockpit.user"
        )
    if not which:
        argv = ["useradd", "--create-home", "--shell", "/bin/bash", "--comment", MARK, user]
        node.run(argv, change=True)
    if "libvirt" not in node.run(["id", "-nG", user]).stdout.split():
        node.run(["usermod", "-aG", "libvirt", user], change=True)
    if not _password_set(props, node):
        line = f"{user}:{passwords.hashed(props['password'])}\n"
        node.run(["chpasswd", "-e"], stdin=line, change=True, secrets=(props["password"],))


def _password_set(props: dict, node) -> bool:
    """The account's hash is the stack's password (hashed again with the same salt)."""
    entry = node.run(["getent", "shadow", props["user"]], check=False).stdout.split(":")
    stored = entry[1] if len(entry) > 1 else ""
    if not stored.startswith("$6$"):
        return False
    salt = stored.split("$")[2]
    return passwords.hashed(props["password"], salt) == stored


def _ensure_served(props: dict, node, olds: dict) -> set:
    """cockpit-ws listening on address:port; the direct daemons this call started."""
    systemd = services.has_systemd(node)
    if systemd:
        drop_in = f"[Socket]\nListenStream=\nListenStream={props['address']}:{props['port']}\n"
        if node.get(DROP_IN) != drop_in:
            node.run(["install", "-d", os.path.dirname(DROP_IN)], change=True)
            node.put(DROP_IN, drop_in, mode="0644")
            node.run(["systemctl", "daemon-reload"], change=True)
            node.run(["systemctl", "restart", "cockpit.socket"], change=True)
        if node.ok(["systemctl", "is-enabled", "--quiet", "cockpit.socket"]):
            return set()  # the operator's already, or ours from an earlier run
        node.run(["systemctl", "enable", "--now", "cockpit.socket"], change=True)
        return {"cockpit.socket"}
    started = {"dbus"} if services.ensure_running(node, DBUS, systemd) else set()
    _ensure_certificate(node)
    moved = olds and (olds.get("address"), olds.get("port")) != (props["address"], props["port"])
    if moved:
        services.stop(node, ws_daemon(olds), systemd)
    services.ensure_running(node, ws_daemon(props), systemd)
    return started


def _ensure_certificate(node) -> None:
    """A self-signed certificate unless one is there, its key readable by cockpit-ws."""
    script = (
        f"ls {CERTS}/*.cert >/dev/null 2>&1 || /usr/lib/cockpit/cockpit-certificate-ensure; "
        f'for k in {CERTS}/*.key; do [ "$(stat -c %G:%a "$k")" = cockpit-wsinstance:640 ] '
        '|| { chgrp cockpit-wsinstance "$k" && chmod 640 "$k"; }; done'
    )
    ok = (
        f"ls {CERTS}/*.cert >/dev/null 2>&1 && for k in {CERTS}/*.key; do "
        '[ "$(stat -c %G:%a "$k")" = cockpit-wsinstance:640 ] || exit 1; done'
    )
    if not node.ok(["sh", "-c", ok]):
        node.run(["sh", "-c", script], change=True)


def _login(props: dict, node) -> int:
    """The HTTP status of a login (200: logged in), 0 while nothing answers."""
    login = url(props) + "cockpit/login"
    return web_login.status(node, "basic", login, props["user"], props["password"])


def _observe(props: dict, node) -> dict | None:
    """None when neither the account nor the console is there; else `ensure: down` when
    the account, its password or the console is not as this resource set it."""
    which = _account(node, props["user"])
    systemd = services.has_systemd(node)
    serving = (
        node.ok(["systemctl", "is-enabled", "--quiet", "cockpit.socket"])
        if systemd
        else services.is_running(node, ws_daemon(props), systemd)
    )
    if not which and not serving:
        return None
    fine = which == "ours" and serving and _password_set(props, node)
    return {"ensure": "up" if fine else "down"}


class Cockpit(pulumi.dynamic.Resource, module="cephkvm", name="Cockpit"):
    url: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        )
        super().__init__(CockpitProvider(), name, {"url": None, "started": None, **props}, opts)
