"""NodePrep: the packages a node needs and the daemons that must run on it.

Installs only the missing packages (apt-get) and starts only what is not running, through
systemd where the node runs it and directly otherwise. Delete stops only the daemons this
resource started; packages stay, because removing them could take away what the operator
relies on.
"""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, facts, services
from providers.schema.node import NodePrepInputs

KNOWN = {"virtlogd": services.VIRTLOGD, "libvirtd": services.LIBVIRTD}

# --- input schema -----------------------------------------------------------------------
# providers/schema/node.py NodePrepInputs
# outputs: installed (packages this resource installed), started (daemons it started),
#          adopted (daemons already running when it came), joined (groups it added the
#          user to), running
INPUTS = NodePrepInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class NodePrepProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        node = self.node
        installed = _install(node, props)
        started = _ensure(node, props["daemons"])
        adopted = [d for d in props["daemons"] if d not in started]
        joined = _join(node, props)
        return CreateResult(
            props["node"],
            {
                **props,
                "installed": installed,
                "started": started,
                "adopted": adopted,
                "joined": joined,
                "running": props["daemons"],
            },
        )

    def read(self, id_, props):
        node = self.node
        systemd = services.has_systemd(node)
        running = [
            d for d in props.get("daemons", []) if services.is_running(node, KNOWN[d], systemd)
        ]
        missing = set(_missing(node, props.get("packages", [])))
        present = [p for p in props.get("packages", []) if p not in missing]
        absent = set(_missing_groups(node, props))
        groups = [g for g in props.get("groups", []) if g not in absent]
        # Report what is really there, so refresh shows drift and the next up repairs it.
        return ReadResult(
            id_,
            {
                **props,
                "packages": present,
                "daemons": running,
                "groups": groups,
                "running": running,
            },
        )

    def update(self, _id, olds, news):
        node = self.node
        installed = olds.get("installed", []) + _install(node, news)
        adopted = olds.get("adopted", [])
        started = [d for d in olds.get("started", []) if d in news["daemons"]]
        # A daemon restarted after drift keeps its origin: adopted ones are never stopped.
        started += [
            d for d in _ensure(node, news["daemons"]) if d not in started and d not in adopted
        ]
        dropped = [d for d in olds.get("started", []) if d not in news["daemons"]]
        _stop(node, dropped)
        joined = olds.get("joined", [])
        joined += [g for g in _join(node, news) if g not in joined]
        return UpdateResult(
            {
                **news,
                "installed": installed,
                "started": started,
                "adopted": adopted,
                "joined": joined,
                "running": news["daemons"],
            }
        )

    def delete(self, _id, props):
        _stop(self.node, props.get("started", []))
        _leave(self.node, props, props.get("joined", []))


def _missing(node, packages: list[str]) -> list[str]:
    if not packages:
        return []
    return facts.parse_lines(node.run(facts.missing_packages_argv(packages)).stdout)


def _install(node, props: dict) -> list[str]:
    """apt-get install the missing packages; return them."""
    missing = _missing(node, props.get("packages", []))
    if missing:
        apt_install(node, missing)
    return missing


def apt_install(node, packages: list[str], timeout: float = 1800) -> None:
    """Debian packages, without prompts or recommends (also ceph-volume's udev)."""
    node.run(
        [
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            *packages,
        ],
        change=True,
        timeout=timeout,
    )


def _user(props: dict) -> str:
    return props["connection"].get("user", "root")


def _missing_groups(node, props: dict) -> list[str]:
    wanted = props.get("groups", [])
    if _user(props) == "root" or not wanted:
        return []
    have = node.run(["id", "-nG", _user(props)]).stdout.split()
    return [g for g in wanted if g not in have]


def _join(node, props: dict) -> list[str]:
    """Add the SSH user to the missing groups; return them."""
    missing = _missing_groups(node, props)
    for group in missing:
        node.run(["usermod", "-aG", group, _user(props)], change=True)
    return missing


def _leave(node, props: dict, groups: list[str]) -> None:
    """Take the user out of the groups this resource added it to, where it still is."""
    gone = set(_missing_groups(node, {**props, "groups": groups}))
    for group in [g for g in groups if g not in gone]:
        node.run(["gpasswd", "-d", _user(props), group], change=True)


def _ensure(node, daemons: list[str]) -> list[str]:
    """Start each daemon that is not running; return the ones started."""
    systemd = services.has_systemd(node)
    started = []
    for name in daemons:
        if services.ensure_running(node, KNOWN[name], systemd):
            started.append(name)
    return started


def _stop(node, daemons: list[str]) -> None:
    if not daemons:
        return  # asks the node nothing (not even its init system)
    systemd = services.has_systemd(node)
    for name in reversed(daemons):
        services.stop(node, KNOWN[name], systemd)


class NodePrep(pulumi.dynamic.Resource, module="cephkvm", name="NodePrep"):
    installed: pulumi.Output[list]
    started: pulumi.Output[list]
    running: pulumi.Output[list]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(
            NodePrepProvider(),
            name,
            {
                "installed": None,
                "started": None,
                "adopted": None,
                "joined": None,
                "running": None,
                **props,
            },
            opts,
        )
