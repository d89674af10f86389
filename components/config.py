"""The stack config: one typed, validated view of the `cephkvm:*` keys.

`load(raw, project_dir)` takes the raw config (key -> value, without the `cephkvm:` prefix)
and returns a StackConfig, or raises ConfigError listing every problem by key path with the
fix. The shape of each section is its model in providers/schema/ (components/config_schema.py
is the root); this module and config_ceph / config_kvm add the rules that span sections. It
reads nothing but local files, so preview stays offline.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import yaml

from components import config_ceph, config_kvm, config_maintenance
from components.config_schema import BASE_PACKAGES as PACKAGES, Stack
from pydantic import ValidationError

from providers.schema.node import Inventory, Ssh
from providers.schema.types import CONTROL, key, messages, render_key, sections, unique, validate

NAMESPACE = "cephkvm"
BASE_PACKAGES = list(PACKAGES)
# Where a newline is content, not an injected line: cloud-init user data and commands, and
# the SSH private key (a PEM block).
FREE_TEXT = (r"ssh_private_key", r"vms\[\d+\]\.cloud_init\.(user_data|runcmd)([.\[].*)?")


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack config:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class StackConfig:
    nodes: tuple
    ssh: Ssh
    virt_type: str = "auto"
    packages: tuple = tuple(BASE_PACKAGES)
    ceph: object = None  # components/config_ceph.py
    kvm: object = None  # components/config_kvm.py
    cockpit: object = None  # cephkvm:kvm.cockpit (providers/schema/node.py Cockpit)
    maintenance: config_maintenance.Maintenance = config_maintenance.Maintenance()


def load(raw: dict, project_dir: str) -> StackConfig:
    raw = {k: _decode(v) for k, v in raw.items()}
    problems: list[str] = []
    if isinstance(raw.get("vms_file"), str):
        raw["vms"] = list(raw.get("vms") or []) + _vms_file(raw["vms_file"], project_dir, problems)
    inventory = _inventory(raw, project_dir, problems)
    known = inventory.vars if inventory is not None else None
    raw = {k: _fill(v, known, k, problems) for k, v in raw.items()}
    control_characters(raw, problems, FREE_TEXT)
    values, found = sections(Stack, raw)
    # A value with a control character is named once, by that rule.
    control = {p.split(": ", 1)[0] for p in problems}
    problems += [f"{key(path)}: {message}" for path, message in found if key(path) not in control]
    ssh = _ssh(values.get("ssh", Ssh()), inventory, project_dir)
    nodes = inventory.nodes if inventory is not None else values.get("nodes", ())
    paths = {
        n.name: f"{'inventory.' if inventory else ''}nodes[{i}]"
        for i, n in enumerate(nodes)
        if n is not None
    }
    listed = len(nodes or ())
    nodes = _nodes(nodes, ssh, paths, problems, "inventory.nodes" if inventory else "nodes")
    public = inventory.public_network if inventory is not None else None
    # A node with a problem is left out, and named once: not again by the rules that count
    # hosts (they would blame the pools) nor by the bridges and VMs that name it.
    partial = len(nodes) < listed
    left_out = _names(raw.get("nodes") if inventory is None else ()) - {n.name for n in nodes}
    ceph = config_ceph.load(values, raw, nodes, paths, public, problems, partial)
    kvm = config_kvm.load(values, nodes, problems, left_out)
    maintenance = config_maintenance.load(values, nodes, ceph, kvm, problems)
    cockpit = values["kvm"].cockpit if "kvm" in values else None
    if problems:
        raise ConfigError(problems)
    return StackConfig(
        nodes=nodes,
        ssh=ssh,
        virt_type=values.get("kvm").virt_type if "kvm" in values else "auto",
        packages=_packages(values.get("packages", tuple(BASE_PACKAGES)), ceph, cockpit),
        ceph=ceph,
        kvm=kvm,
        maintenance=maintenance,
        cockpit=cockpit,
    )


def _names(listed) -> set:
    """The names written in a list of nodes, valid or not."""
    if not isinstance(listed, list):
        return set()
    return {n["name"] for n in listed if isinstance(n, dict) and isinstance(n.get("name"), str)}


COCKPIT_PACKAGES = ("cockpit-ws", "cockpit-bridge", "cockpit-system", "cockpit-machines")


def _packages(packages: tuple, ceph, cockpit) -> tuple:
    """The stack's packages, plus what a feature it turns on needs."""
    extra = ("ceph-mgr-dashboard",) if ceph is not None and ceph.dashboard else ()
    extra += (*COCKPIT_PACKAGES, "libvirt-dbus") if cockpit else ()
    return tuple(packages) + tuple(p for p in extra if p not in packages)


# --- the inventory ----------------------------------------------------------------------


def _inventory(raw: dict, project_dir: str, problems: list) -> Inventory | None:
    """`cephkvm:inventory`: the nodes (and ssh, public_network, vars) from a file."""
    if not isinstance(raw.get("inventory"), str):
        return None  # absent, or its type is the schema's problem
    if raw.get("nodes"):
        problems.append(
            f"{key('nodes')}: the nodes come from {key('inventory')}; list them in one place"
        )
    path = _path(
        ENV_VAR.sub(lambda m: os.environ.get(m.group(1) or m.group(2), ""), raw["inventory"]),
        project_dir,
    )
    try:
        with open(path) as f:
            data = _yaml(f)  # JSON is YAML too
    except (OSError, yaml.YAMLError) as err:
        problems.append(
            f"{key('inventory')}: cannot read {path} ({err}); for the lab, run "
            "`make lab` or `python -m lab up` first"
        )
        return None
    try:
        return validate(Inventory, data)
    except ValidationError as err:
        problems += [
            f"{key('inventory.' + p)}: {m} (in {path})" for p, m in messages(err, Inventory)
        ]
        return None


ENV_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")  # an unset one is empty (.lab${CEPHKVM_LAB})
INVENTORY_VAR = re.compile(r"\{inventory:([A-Za-z0-9_]+)\}")


def _fill(value, known: dict | None, path: str, problems: list):
    """value with each `{inventory:NAME}` replaced by the inventory's vars[NAME] (known is
    None without an inventory)."""
    if isinstance(value, dict):
        return {k: _fill(v, known, f"{path}.{k}", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, known, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    for name in INVENTORY_VAR.findall(value):
        if known is None:
            problems.append(
                f"{key(path)}: {{inventory:{name}}} needs a {key('inventory')} "
                "file whose vars give it"
            )
        elif name not in known:
            problems.append(
                f"{key(path)}: {{inventory:{name}}} is not in the inventory's "
                f"vars ({', '.join(sorted(known)) or 'none'})"
            )
    return INVENTORY_VAR.sub(lambda m: (known or {}).get(m.group(1), m.group(0)), value)


def control_characters(raw, problems: list, free=(), path: str = "") -> None:
    """One problem per string value (or key) holding a control character: a newline in a
    mountpoint, an option name or an authorized key writes extra lines into fstab,
    ceph.conf or authorized_keys. Paths matching a pattern in `free` are not checked.
    Values are not echoed: some are secrets."""
    if any(re.fullmatch(pattern, path) for pattern in free):
        return
    if isinstance(raw, dict):
        for k, v in raw.items():
            sub = f"{path}.{render_key(k)}" if path else render_key(k)
            if isinstance(k, str) and CONTROL.search(k):
                problems.append(
                    f"{key(sub)}: the key holds a control character (a newline, "
                    "a tab, ...); remove it"
                )
            control_characters(v, problems, free, sub)
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            control_characters(v, problems, free, f"{path}[{i}]")
    elif isinstance(raw, str) and CONTROL.search(raw):
        problems.append(
            f"{key(path)}: holds a control character (a newline, a tab, ...); "
            "values that end up in files must be one line"
        )


def _yaml(stream):
    """yaml.safe_load, through libyaml where the wheel has it: 500 VMs in 0.08 s, not 0.4 s."""
    return yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _vms_file(value: str, project_dir: str, problems: list) -> list:
    path = _path(value, project_dir)
    try:
        with open(path) as f:
            vms = _yaml(f)
    except (OSError, yaml.YAMLError) as err:
        problems.append(
            f"{key('vms_file')}: cannot read {path} ({err}); give a YAML file "
            "holding a list of VMs, relative to the project directory"
        )
        return []
    if not isinstance(vms, list):
        problems.append(f"{key('vms_file')}: {path} must hold a YAML list of VMs")
        return []
    return vms


def _decode(value):
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _ssh(ssh: Ssh, inventory: Inventory | None, project_dir: str) -> Ssh:
    """cephkvm:ssh, with what the inventory sets taking its place."""
    if inventory is not None and inventory.ssh is not None:
        ssh = ssh.model_copy(update=inventory.ssh.model_dump(exclude_unset=True))
    return ssh.model_copy(
        update={
            "key_file": _path(ssh.key_file, project_dir),
            "known_hosts": _path(ssh.known_hosts, project_dir),
        }
    )


def _path(value, project_dir: str) -> str | None:
    if value is None:
        return None
    return os.path.normpath(os.path.join(project_dir, os.path.expanduser(str(value))))


def _nodes(nodes: tuple, ssh: Ssh, paths: dict, problems: list, section: str) -> tuple:
    """The valid nodes; an invalid one is None in `nodes` (its problems are listed)."""
    if not nodes:
        if not any(p.startswith(key("inventory")) for p in problems):
            problems.append(
                f"{key('nodes')}: list at least one node (name, address, "
                "host_key), or give a cephkvm:inventory file"
            )
        return ()
    valid = []
    for _, node in unique(nodes, section, problems, "node names must be unique"):
        valid.append(node)
        if node.host_key is None and not ssh.trust_on_first_use:
            problems.append(
                f"{key(paths[node.name] + '.host_key')}: pin the node's SSH host "
                "key, "
                f"or set {key('ssh.trust_on_first_use')}: true to record it on "
                "first contact"
            )
    return tuple(valid)
