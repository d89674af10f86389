"""The stack config schema: one typed, validated view of `cephkvm:*` keys.

`load(raw, project_dir)` takes the raw config (key -> value, without the `cephkvm:` prefix)
and returns a StackConfig, or raises ConfigError listing every problem by key path with the
fix. It reads nothing but local files, so preview stays offline.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import yaml

from components import config_ceph, config_kvm
from components.config_types import boolean, control_characters, is_address, is_ip, \
    unknown_keys

NAMESPACE = "cephkvm"
ROLES = ("mon", "mgr", "mds", "osd", "kvm")
VIRT_TYPES = ("auto", "kvm", "qemu")
NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$")
# ssh_private_key is a secret (`pulumi config set --secret`); __main__ reads it as one.
# vms_file: a YAML list of VMs read from a file, for fleets too large for stack config (the
# engine hands the program its whole config in one environment variable, capped at 128 KiB).
KNOWN_KEYS = ("lab", "nodes", "ssh", "ssh_private_key", "kvm", "packages", "vms_file")
NODE_FIELDS = ("name", "address", "ceph_address", "port", "user", "key_file", "host_key",
               "roles", "disks")
SSH_FIELDS = ("key_file", "known_hosts", "trust_on_first_use")
KVM_FIELDS = ("virt_type",)
# Where a newline is content, not an injected line: cloud-init user data and commands, and
# the SSH private key (a PEM block).
FREE_TEXT = (r"ssh_private_key", r"vms\[\d+\]\.cloud_init\.(user_data|runcmd)([.\[].*)?")

BASE_PACKAGES = ["openssh-server", "iproute2", "qemu-system-x86", "qemu-utils",
                 "libvirt-daemon-system", "libvirt-clients", "cloud-image-utils",
                 "ceph-mon", "ceph-mgr", "ceph-osd", "ceph-mds", "ceph-common", "ceph-fuse"]


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack config:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class NodeConfig:
    name: str
    address: str              # where cephkvm reaches it over SSH
    port: int = 22
    ceph_address: str | None = None  # its address on Ceph's public network, if another one
    user: str = "root"
    key_file: str | None = None
    host_key: str | None = None
    roles: tuple = ROLES
    disks: tuple = ()

    @property
    def public_address(self) -> str:
        """Where its mon listens and its daemons talk to the cluster."""
        return self.ceph_address or self.address

    def connection(self, ssh: "SshConfig") -> dict:
        """The `connection` input every per-node provider takes."""
        conn = {"name": self.name, "address": self.address, "port": self.port,
                "user": self.user, "key_file": self.key_file or ssh.key_file,
                "host_key": self.host_key, "known_hosts": ssh.known_hosts,
                "trust_on_first_use": ssh.trust_on_first_use}
        return {k: v for k, v in conn.items() if v is not None}


@dataclass(frozen=True)
class SshConfig:
    key_file: str | None = None
    known_hosts: str = os.path.expanduser("~/.config/cephkvm/known_hosts")
    trust_on_first_use: bool = False


@dataclass(frozen=True)
class StackConfig:
    nodes: tuple
    ssh: SshConfig
    virt_type: str = "auto"
    packages: tuple = tuple(BASE_PACKAGES)
    lab: bool = False
    ceph: object = None  # components/config_ceph.py
    kvm: object = None  # components/config_kvm.py


# --- loading ----------------------------------------------------------------------------


def key(path: str) -> str:
    return f"{NAMESPACE}:{path}"


def load(raw: dict, project_dir: str) -> StackConfig:
    raw = {k: _decode(v) for k, v in raw.items()}
    problems: list[str] = []
    unknown_keys(raw, KNOWN_KEYS + config_ceph.KEYS + config_kvm.KEYS, "", problems)
    lab = boolean(raw, "lab", "lab", problems)
    ssh = _ssh(raw.get("ssh") or {}, project_dir, problems)
    if lab:
        nodes_raw, ssh = _lab_inventory(project_dir, ssh, problems)
    else:
        nodes_raw = raw.get("nodes")
    nodes = _nodes(nodes_raw, ssh, problems)
    kvm = raw.get("kvm") or {}
    unknown_keys(kvm, KVM_FIELDS, "kvm", problems)
    virt_type = kvm.get("virt_type", "auto") if isinstance(kvm, dict) else None
    if virt_type not in VIRT_TYPES:
        problems.append(f"{key('kvm.virt_type')}: {virt_type!r} is not one of "
                        f"{', '.join(VIRT_TYPES)} (use qemu where KVM acceleration fails)")
    packages = _string_list(raw.get("packages", BASE_PACKAGES), "packages", problems)
    # Sections: each module validates its own keys against the nodes and returns its part.
    if "vms_file" in raw:
        raw["vms"] = list(raw.get("vms") or []) + _vms_file(raw["vms_file"], project_dir,
                                                             problems)
    control_characters(raw, problems, FREE_TEXT)
    ceph = config_ceph.load(raw, nodes, lab, project_dir, problems)
    kvm = config_kvm.load(raw, nodes, problems, ssh,
                          config_ceph.lab_subnet(project_dir) if lab else None)
    if problems:
        raise ConfigError(problems)
    return StackConfig(nodes=nodes, ssh=ssh, virt_type=virt_type, packages=packages, lab=lab,
                       ceph=ceph, kvm=kvm)


def _vms_file(value, project_dir: str, problems: list) -> list:
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


def _ssh(raw: dict, project_dir: str, problems: list) -> SshConfig:
    if not isinstance(raw, dict):
        problems.append(f"{key('ssh')}: must be a mapping (key_file, known_hosts, "
                        "trust_on_first_use)")
        return SshConfig()
    unknown_keys(raw, SSH_FIELDS, "ssh", problems)
    known = raw.get("known_hosts", SshConfig.known_hosts)
    return SshConfig(
        key_file=_path(raw.get("key_file"), project_dir),
        known_hosts=_path(known, project_dir),
        trust_on_first_use=boolean(raw, "trust_on_first_use", "ssh.trust_on_first_use",
                                   problems),
    )


def _path(value, project_dir: str) -> str | None:
    if value is None:
        return None
    return os.path.normpath(os.path.join(project_dir, os.path.expanduser(str(value))))


def _lab_inventory(project_dir: str, ssh: SshConfig, problems: list):
    lab_dir = ".lab" + os.environ.get("CEPHKVM_LAB", "")  # see lab/const.py
    path = os.path.join(project_dir, lab_dir, "inventory.json")
    try:
        with open(path) as f:
            inv = json.load(f)
    except FileNotFoundError:
        problems.append(f"{key('lab')}: the lab is not up ({path} is missing). "
                        "Run `make lab` or `python -m lab up` first.")
        return [], ssh
    ssh = SshConfig(key_file=inv["ssh_key"], known_hosts=inv["known_hosts"],
                    trust_on_first_use=False)
    # roles: every role unless the inventory says otherwise (a test may take one away).
    nodes = [{"name": n["name"], "address": n["address"], "port": n.get("port", 22),
              "user": n.get("user", "root"), "host_key": n["host_key"],
              "disks": n.get("disks", []), **({"roles": n["roles"]} if "roles" in n else {})}
             for n in inv["nodes"]]
    return nodes, ssh


def _nodes(raw, ssh: SshConfig, problems: list) -> tuple:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{key('nodes')}: list at least one node (name, address, host_key)")
        return ()
    nodes, seen = [], set()
    for i, item in enumerate(raw):
        node = _node(item, f"nodes[{i}]", ssh, problems)
        if node and node.name in seen:
            problems.append(f"{key(f'nodes[{i}].name')}: {node.name!r} is listed twice; "
                            "node names must be unique")
        if node:
            seen.add(node.name)
            nodes.append(node)
    return tuple(nodes)


def _node(item, path: str, ssh: SshConfig, problems: list) -> NodeConfig | None:
    if not isinstance(item, dict):
        problems.append(f"{key(path)}: must be a mapping with name and address")
        return None
    before = len(problems)
    unknown_keys(item, NODE_FIELDS, path, problems)
    name, address = str(item.get("name", "")), str(item.get("address", ""))
    if not NODE_NAME.fullmatch(name):
        problems.append(f"{key(path + '.name')}: {name!r} must be a short lower-case name "
                        "(letters, digits, dashes)")
    if not is_address(address):
        problems.append(f"{key(path + '.address')}: {address!r} is not an IP address or "
                        "host name")
    ceph_address = item.get("ceph_address")
    if ceph_address is not None and not is_ip(ceph_address):
        problems.append(f"{key(path + '.ceph_address')}: {ceph_address!r} must be the node's IP "
                        "address on Ceph's public network")
    port = item.get("port", 22)
    if not isinstance(port, int) or not 0 < port < 65536:
        problems.append(f"{key(path + '.port')}: {port!r} must be a TCP port (1-65535)")
    host_key = item.get("host_key")
    if host_key is not None and not HOST_KEY.fullmatch(str(host_key).strip()):
        problems.append(f"{key(path + '.host_key')}: must look like 'ssh-ed25519 AAAA...' "
                        "(a line of `ssh-keyscan`, without the host name)")
    if host_key is None and not ssh.trust_on_first_use:
        problems.append(f"{key(path + '.host_key')}: pin the node's SSH host key, or set "
                        f"{key('ssh.trust_on_first_use')}: true to record it on first contact")
    roles = _string_list(item.get("roles", list(ROLES)), path + ".roles", problems)
    for role in roles:
        if role not in ROLES:
            problems.append(f"{key(path + '.roles')}: unknown role {role!r}; roles are "
                            f"{', '.join(ROLES)}")
    disks = _string_list(item.get("disks", []), path + ".disks", problems)
    for disk in disks:
        if not disk.startswith("/dev/"):
            problems.append(f"{key(path + '.disks')}: {disk!r} must be an absolute device "
                            "path such as /dev/sdb")
    if len(problems) > before:
        return None
    return NodeConfig(name=name, address=address, ceph_address=ceph_address, port=port,
                      user=str(item.get("user", "root")),
                      key_file=item.get("key_file"), host_key=host_key and host_key.strip(),
                      roles=roles, disks=disks)


def _string_list(value, path: str, problems: list) -> tuple:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{key(path)}: must be a list of strings")
        return ()
    return tuple(value)
