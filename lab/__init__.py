"""The local lab: this one machine as N Ceph+KVM nodes (see DESIGN.md section 5).

CLI: `python -m lab up|down|status|ssh|exec` (as root, from anywhere).
API for tests and tools:

    lab.inventory()            -> the dict in .lab/inventory.json, or None when the lab is down
    lab.node("node1")          -> that node's inventory entry
    lab.run("node1", cmd)      -> CompletedProcess of cmd over ssh (list: quoted; str: shell)
    lab.ssh_argv("node1")      -> the ssh command line for that node
    lab.leftovers()            -> what a lab would leave on the machine (empty when clean)
"""

from . import const
from .lifecycle import down, leftovers, load_inventory, status, up
from . import ssh as _ssh

__all__ = ["const", "down", "inventory", "leftovers", "node", "run", "ssh_argv", "status", "up"]


def inventory():
    return load_inventory()


def node(name):
    inv = inventory()
    if not inv:
        raise RuntimeError("the lab is down (no .lab/inventory.json): run `python -m lab up`")
    for n in inv["nodes"]:
        if n["name"] == name or n["address"] == name:
            return n
    raise ValueError(f"no lab node {name!r}; nodes: {[n['name'] for n in inv['nodes']]}")


def _resolve(n):
    return n if isinstance(n, dict) else node(n)


def run(n, cmd, check=False, timeout=60, input=None, known_hosts=None):
    return _ssh.run(
        _resolve(n), cmd, check=check, timeout=timeout, input=input, known_hosts=known_hosts
    )


def ssh_argv(n, known_hosts=None):
    return _ssh.ssh_argv(_resolve(n), known_hosts)
