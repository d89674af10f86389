"""CephDashboard: the mgr module `dashboard` over HTTPS (a self-signed certificate unless the
operator stores their own), served by every mgr on its node's address (a standby redirects
to the active one), with one administrator whose password cephkvm generates.

The password lives in state only, as a secret output; it reaches the node on stdin, never
on a command line. Pacific's mgr cannot load both `dashboard` and `restful` here (two
modules importing the same Rust extension fail "PyO3 modules may only be initialized once"),
so enabling the dashboard turns `restful` off, and removing it tries to turn `restful` back
on when it was on before.
"""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts, passwords, web_login
from providers.ceph_cli import admin_session, ceph, ceph_argv, ceph_json, quorum
from providers.schema.ceph import DashboardInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py DashboardInputs
# outputs: url (the active mgr's), urls (every mgr's), password (secret), restful_was_on
INPUTS = DashboardInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
OUTPUTS = ("url", "urls", "password", "restful_was_on")
SECRET_OUTPUTS = ["password"]

MODULE = "dashboard"
CLASH = "restful"  # cannot load beside the dashboard (see above)


class CephDashboardProvider(base.Provider):
    INPUTS = INPUTS
    SETTLE = True

    def create(self, props):
        outs = _converge(props, admin_session(props), {}, passwords.generate())
        return CreateResult(props["fsid"], {**props, **outs})

    def read(self, id_, props):
        node = admin_session(props)
        found = _observe(props, node)
        if found is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, **found})

    def update(self, _id, olds, news):
        node = admin_session(news)
        if olds.get("user") and olds["user"] != news["user"]:
            _drop_user(news, node, olds["user"])
        outs = _converge(news, node, olds, olds.get("password") or passwords.generate())
        return UpdateResult({**news, **outs})

    def delete(self, _id, props):
        """The module off, its account and options gone. With no quorum there is no mon
        store to change (the cluster is being taken down)."""
        node, c = admin_session(props), props["cluster_name"]
        if not quorum(node, c):
            return
        if MODULE in _modules(node, c):
            _drop_user(props, node, props["user"])
            ceph(node, c, "mgr", "module", "disable", MODULE, change=True)
        _options(props, node, {}, props)
        if props.get("restful_was_on") and CLASH not in _modules(node, c):
            _restore_clash(props, node)


def _restore_clash(props: dict, node) -> None:
    """`restful` back on, as it was before; where the mgr cannot load it (the dashboard's
    package installed is enough), say so and leave it off."""
    c = props["cluster_name"]
    done = ceph(node, c, "mgr", "module", "enable", CLASH, check=False, change=True)
    if done.exit_code != 0:
        pulumi.log.warn(f"mgr module {CLASH} stays off: {done.stderr.strip()}")


def _converge(props: dict, node, olds: dict, password: str) -> dict:
    c = props["cluster_name"]
    modules = _modules(node, c)
    restful_was_on = olds.get("restful_was_on", CLASH in modules)
    if CLASH in modules and MODULE not in modules:
        pulumi.log.info(f"mgr module {CLASH} is turned off: it cannot run beside the dashboard")
        ceph(node, c, "mgr", "module", "disable", CLASH, change=True)
    moved = _options(props, node, _wanted(props), olds)
    if MODULE not in modules:
        ceph(node, c, "mgr", "module", "enable", MODULE, change=True)
    elif moved:  # a new port or address takes a restart of the module
        ceph(node, c, "mgr", "module", "disable", MODULE, change=True)
        ceph(node, c, "mgr", "module", "enable", MODULE, change=True)
    _wait_module(props, node)
    if not node.ok(ceph_argv(c, "config-key", "exists", "mgr/dashboard/crt")):
        ceph(node, c, "dashboard", "create-self-signed-cert", change=True)
    url = _wait_served(props, node)
    _ensure_user(props, node, url, password)
    return {
        "url": url,
        "urls": _urls(props),
        "password": password,
        "restful_was_on": restful_was_on,
    }


def _modules(node, cluster: str) -> set:
    return ceph_facts.mgr_modules(ceph_json(node, cluster, "mgr", "module", "ls"))


def _wanted(props: dict) -> dict:
    """The module's options in the mons' store (section mgr): HTTPS on `port`, each mgr on
    its own node's address, which is also what `ceph mgr services` then reports."""
    wanted = {"mgr/dashboard/ssl": "true", "mgr/dashboard/ssl_server_port": str(props["port"])}
    for mgr, address in sorted(props["mgrs"].items()):
        wanted[f"mgr/dashboard/{mgr}/server_addr"] = address
    return wanted


def _options(props: dict, node, wanted: dict, olds: dict) -> bool:
    """Set what differs, remove what an older config set and this one does not (a mgr that
    left). Whether anything changed."""
    c = props["cluster_name"]
    current = ceph_facts.config_dump(ceph_json(node, c, "config", "dump")).get("mgr", {})
    moved = False
    for option, value in wanted.items():
        if current.get(option) != value:
            ceph(node, c, "config", "set", "mgr", option, value, change=True)
            moved = True
    for option in _wanted(olds) if olds.get("mgrs") else {}:
        if option not in wanted and option in current:
            ceph(node, c, "config", "rm", "mgr", option, change=True)
            moved = True
    return moved


def _wait_module(props: dict, node) -> None:
    """An enabled module answers its commands only once the active mgr has loaded it (the
    mgr restarts to load a module)."""
    c, user = props["cluster_name"], props["user"]
    base.wait_until(
        lambda: (
            ceph(node, c, "dashboard", "ac-user-show", user, check=False).exit_code in (0, 2)
        ),  # 2: ENOENT, the user is not there yet; the module answered
        timeout=props["timeout"],
        what="the active mgr to load the dashboard module",
        report=lambda: ceph(node, c, "mgr", "module", "ls", check=False).stderr,
    )


def _wait_served(props: dict, node) -> str:
    """The URL the active mgr serves the dashboard on (its own address)."""
    c = props["cluster_name"]

    def served():
        url = ceph_facts.mgr_services(ceph_json(node, c, "mgr", "services")).get(MODULE, "")
        return url if url.startswith("https://") and f":{props['port']}/" in url else ""

    return base.wait_until(
        served,
        timeout=props["timeout"],
        what=f"the active mgr to serve the dashboard on port {props['port']}",
        report=lambda: "Health: " + ceph(node, c, "health", "detail", check=False).stdout,
    )


def _urls(props: dict) -> list:
    return [f"https://{_host(a)}:{props['port']}/" for _, a in sorted(props["mgrs"].items())]


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _login(props: dict, node, url: str, password: str) -> int:
    """The HTTP status of a login (201: logged in), 0 while nothing answers at url."""
    return web_login.status(node, "json", url.rstrip("/") + "/api/auth", props["user"], password)


def _ensure_user(props: dict, node, url: str, password: str) -> None:
    """The administrator exists and logs in with the password in state: created when
    missing, its password set again when it does not log in (a crash between the two
    steps, a password changed by hand)."""
    c, user = props["cluster_name"], props["user"]
    answered = base.wait_until(
        lambda: _login(props, node, url, password),
        timeout=props["timeout"],
        what=f"the dashboard at {url} to answer",
    )
    if answered == 201:
        return
    found = ceph(node, c, "dashboard", "ac-user-show", user, check=False).exit_code == 0
    argv = (
        ["ac-user-set-password", user, "--force-password"]
        if found
        else ["ac-user-create", user, "administrator", "--force-password"]
    )
    node.run(
        ceph_argv(c, "dashboard", *argv, "-i", "-"),
        stdin=password,
        secrets=(password,),
        change=True,
    )
    base.wait_until(
        lambda: _login(props, node, url, password) == 201,
        timeout=props["timeout"],
        what=f"{user} to log in to the dashboard at {url}",
    )


def _drop_user(props: dict, node, user: str) -> None:
    c = props["cluster_name"]
    if ceph(node, c, "dashboard", "ac-user-show", user, check=False).exit_code == 0:
        ceph(node, c, "dashboard", "ac-user-delete", user, change=True)


def _observe(props: dict, node) -> dict | None:
    """None when the module is off; else what the cluster serves. An administrator that is
    missing or does not log in with the password in state reads as `ensure: down`, so the
    next `up` sets it again."""
    c = props["cluster_name"]
    if MODULE not in _modules(node, c):
        return None
    url = ceph_facts.mgr_services(ceph_json(node, c, "mgr", "services")).get(MODULE)
    shown = ceph(node, c, "dashboard", "ac-user-show", props["user"], check=False).exit_code
    # 2 (ENOENT): no such user; another error (the module reloading) says nothing new
    ensure = {0: "up", 2: "down"}.get(shown, props.get("ensure", "up"))
    if ensure == "up" and url and props.get("password"):
        refused = _login(props, node, url, props["password"]) in (400, 401)
        ensure = "down" if refused else ensure
    return {"url": url or props.get("url"), "ensure": ensure}


class CephDashboard(pulumi.dynamic.Resource, module="cephkvm", name="CephDashboard"):
    url: pulumi.Output[str]
    urls: pulumi.Output[list]
    user: pulumi.Output[str]
    password: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            CephDashboardProvider(),
            name,
            {**{k: None for k in OUTPUTS}, **props},
            opts,
        )
