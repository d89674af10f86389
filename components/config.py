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

from components import config_ceph, config_kvm
from components.config_schema import BASE_PACKAGES as PACKAGES, Stack
from providers.schema.node import Node, Ssh
from providers.schema.types import CONTROL, render_key, sections, unique, validate

NAMESPACE = "cephkvm"
BASE_PACKAGES = list(PACKAGES)
# Where a newline is content, not an injected line: cloud-init user data and commands, and
# the SSH private key (a PEM block).
FREE_TEXT = (r"ssh_private_key", r"vms\[\d+\]\.cloud_init\.(user_data|runcmd)([.\[].*)?")
NodeConfig = Node  # the name components use


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
    lab: bool = False
    ceph: object = None  # components/config_ceph.py
    kvm: object = None  # components/config_kvm.py


def key(path: str) -> str:
    return f"{NAMESPACE}:{path}"


def load(raw: dict, project_dir: str) -> StackConfig:
    raw = {k: _decode(v) for k, v in raw.items()}
    problems: list[str] = []
    control_characters(raw, problems, FREE_TEXT)
    if isinstance(raw.get("vms_file"), str):
        raw["vms"] = list(raw.get("vms") or []) + _vms_file(raw["vms_file"], project_dir,
                                                             problems)
    values, found = sections(Stack, raw)
    # A value with a control character is named once, by that rule.
    control = {p.split(": ", 1)[0] for p in problems}
    problems += [f"{key(path)}: {message}" for path, message in found
                 if key(path) not in control]
    lab = values.get("lab", False)
    ssh = _ssh(values.get("ssh", Ssh()), project_dir)
    nodes = values.get("nodes", ())
    if lab:
        nodes, ssh = _lab_inventory(project_dir, ssh, problems)
    paths = {n.name: f"nodes[{i}]" for i, n in enumerate(nodes) if n is not None}
    nodes = _nodes(nodes, ssh, problems)
    ceph = config_ceph.load(values, raw, nodes, paths, lab, project_dir, problems)
    kvm = config_kvm.load(values, nodes, problems, ssh,
                          config_ceph.lab_subnet(project_dir) if lab else None, lab)
    if problems:
        raise ConfigError(problems)
    return StackConfig(nodes=nodes, ssh=ssh, virt_type=values.get("kvm").virt_type
                       if "kvm" in values else "auto",
                       packages=values.get("packages", tuple(BASE_PACKAGES)), lab=lab,
                       ceph=ceph, kvm=kvm)


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
                problems.append(f"{key(sub)}: the key holds a control character (a newline, "
                                "a tab, ...); remove it")
            control_characters(v, problems, free, sub)
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            control_characters(v, problems, free, f"{path}[{i}]")
    elif isinstance(raw, str) and CONTROL.search(raw):
        problems.append(f"{key(path)}: holds a control character (a newline, a tab, ...); "
                        "values that end up in files must be one line")


def _vms_file(value: str, project_dir: str, problems: list) -> list:
    path = _path(value, project_dir)
    try:
        with open(path) as f:
            vms = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        problems.append(f"{key('vms_file')}: cannot read {path} ({err}); give a YAML file "
                        "holding a list of VMs, relative to the project directory")
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


def _ssh(ssh: Ssh, project_dir: str) -> Ssh:
    return ssh.model_copy(update={"key_file": _path(ssh.key_file, project_dir),
                                  "known_hosts": _path(ssh.known_hosts, project_dir)})


def _path(value, project_dir: str) -> str | None:
    if value is None:
        return None
    return os.path.normpath(os.path.join(project_dir, os.path.expanduser(str(value))))


def _lab_inventory(project_dir: str, ssh: Ssh, problems: list):
    lab_dir = ".lab" + os.environ.get("CEPHKVM_LAB", "")  # see lab/const.py
    path = os.path.join(project_dir, lab_dir, "inventory.json")
    try:
        with open(path) as f:
            inv = json.load(f)
    except FileNotFoundError:
        problems.append(f"{key('lab')}: the lab is not up ({path} is missing). "
                        "Run `make lab` or `python -m lab up` first.")
        return (), ssh
    ssh = Ssh(key_file=inv["ssh_key"], known_hosts=inv["known_hosts"])
    # roles: every role unless the inventory says otherwise (a test may take one away).
    fields = ("name", "address", "port", "user", "host_key", "disks", "roles")
    return tuple(validate(Node, {k: n[k] for k in fields if k in n})
                 for n in inv["nodes"]), ssh


def _nodes(nodes: tuple, ssh: Ssh, problems: list) -> tuple:
    """The valid nodes; an invalid one is None in `nodes` (its problems are listed)."""
    if not nodes:
        problems.append(f"{key('nodes')}: list at least one node (name, address, host_key)")
        return ()
    valid = []
    for i, node in unique(nodes, "nodes", problems, "node names must be unique"):
        valid.append(node)
        if node.host_key is None and not ssh.trust_on_first_use:
            problems.append(f"{key(f'nodes[{i}].host_key')}: pin the node's SSH host key, "
                            f"or set {key('ssh.trust_on_first_use')}: true to record it on "
                            "first contact")
    return tuple(valid)
