"""The KVM part of the stack config: bridges, VMs and where VM disks live.

    cephkvm:vm_storage: /mnt/cephfs        # holds templates/, virtualmachines/, config/
    cephkvm:vm_storage_shared: false       # true: every node sees the same directory even
                                           # though it is not CephFS (the lab before CephFS)
    cephkvm:bridges:
      - name: br0
        interfaces: [ens33]
        nodes: [osd1, osd2]                # default: every node with the kvm role
        addresses: {osd1: [10.20.10.31/24]}   # default: keep the NIC's own addresses
        gateway: 10.20.10.2
        nameservers: [10.20.10.11]
        search: [intranet.example.com]
        confirm_timeout: 30                # rollback unless SSH answers again in time
    cephkvm:vms:
      - name: virt-01
        node: osd1
        template: /path/to/cloud.img        # or {source: ..., sha256: ...}
        memory_mib: 512
        vcpus: 1
        disk_gib: 10
        nics: [{bridge: br0}]
        cloud_init: {hostname: virt-01, ssh_authorized_keys: [...]}
    cephkvm:vm_passwords: {virt-01: ...}   # secret: `pulumi config set --secret --path
                                           #   'cephkvm:vm_passwords.virt-01' PASSWORD`

`load` never imports components.config (which imports this module); it gets the nodes and
appends problems, each naming the key path and the fix.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field

from components.config_types import boolean, is_interface, is_ip, unknown_keys

KEYS = ("vm_storage", "vm_storage_shared", "bridges", "vms", "vm_passwords")
IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")
VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
VM_FIELDS = ("name", "node", "template", "memory_mib", "max_memory_mib", "vcpus", "max_vcpus",
             "disk_gib", "virt_type", "nics", "cloud_init", "autostart", "on_restart_needed",
             "on_cloud_init_change", "keep_disk", "shutdown_timeout", "wait_for", "ready_timeout")
WAIT_FOR = ("cloud-init", "address", "none")
# field: (lowest, highest, default)
VM_INTS = {"memory_mib": (64, 4 << 20, 512), "vcpus": (1, 512, 1), "disk_gib": (1, 1 << 16, 10),
           "max_memory_mib": (64, 4 << 20, None), "max_vcpus": (1, 512, None),
           "shutdown_timeout": (0, 3600, 60), "ready_timeout": (0, 86400, 300)}
AUTHORIZED_KEY = re.compile(r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|"
                            r"sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) "
                            r"[A-Za-z0-9+/=]+( [^\x00-\x1f]*)?")
BRIDGE_FIELDS = ("name", "interfaces", "nodes", "addresses", "gateway", "nameservers",
                 "search", "mode", "network", "confirm_timeout", "vlan", "bond")
BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad",
              "balance-tlb", "balance-alb")
CLOUD_INIT_KEYS = ("hostname", "users", "ssh_authorized_keys", "packages", "runcmd",
                   "user_data", "network_config")


@dataclass(frozen=True)
class BridgeConfig:
    name: str
    interfaces: tuple
    nodes: tuple
    addresses: dict = field(default_factory=dict)  # node -> [cidr]; missing: keep the NIC's
    gateway: str | None = None
    nameservers: tuple = ()
    search: tuple = ()
    mode: str = "auto"
    network: str | None = None  # libvirt network name; default: the bridge's name
    confirm_timeout: int = 30
    vlan: int | None = None
    bond: dict | None = None  # {name, mode}


@dataclass(frozen=True)
class VmConfig:
    name: str
    node: str
    template: dict
    memory_mib: int = 512
    max_memory_mib: int | None = None
    vcpus: int = 1
    max_vcpus: int | None = None
    disk_gib: int = 10
    virt_type: str = "auto"  # auto: the node's effective virt type
    nics: tuple = ()
    cloud_init: dict = field(default_factory=dict)
    password: str | None = None  # from cephkvm:vm_passwords (secret)
    autostart: bool = True
    on_restart_needed: str = "restart"
    on_cloud_init_change: str = "next-boot"
    keep_disk: bool = True  # deleting a VM disk needs an explicit opt-in
    shutdown_timeout: int = 60
    wait_for: str = "cloud-init"  # what makes the VM ready: see providers/cloud_vm.py
    ready_timeout: int = 300


@dataclass(frozen=True)
class KvmConfig:
    storage: str = "/mnt/cephfs"
    storage_shared: bool = False
    bridges: tuple = ()
    vms: tuple = ()


def key(path: str) -> str:
    return f"cephkvm:{path}"


def load(raw: dict, nodes: tuple, problems: list, ssh=None,
         lab_subnet: str | None = None) -> KvmConfig:
    names = [n.name for n in nodes]
    kvm_nodes = [n.name for n in nodes if "kvm" in n.roles]
    storage = raw.get("vm_storage", KvmConfig.storage)
    if not isinstance(storage, str) or not storage.startswith("/"):
        problems.append(f"{key('vm_storage')}: {storage!r} must be an absolute directory "
                        "(where CephFS is mounted, e.g. /mnt/cephfs)")
    lab = boolean(raw, "lab", "lab", [])  # config.py reports a bad value
    if lab and isinstance(storage, str):
        # Lab instances side by side (CEPHKVM_LAB, see lab/const.py) keep their VMs apart.
        storage = storage.replace("{lab}", os.environ.get("CEPHKVM_LAB", ""))
    shared = boolean(raw, "vm_storage_shared", "vm_storage_shared", problems)
    bridges = _bridges(raw.get("bridges", []), names, kvm_nodes, problems)
    passwords = raw.get("vm_passwords") or {}
    if not isinstance(passwords, dict):
        problems.append(f"{key('vm_passwords')}: must be a mapping of VM name to password")
        passwords = {}
    vms = _vms(raw.get("vms", []), names, passwords, problems)
    _check_nics(raw.get("vms", []), vms, bridges, problems)
    if lab:
        # Lab nodes share the controller's file system: a template path may use ~ and a
        # link (lab-guest.qcow2), resolved here so a rebuilt image is a new template.
        vms = tuple(_resolve_lab_template(vm) for vm in vms)
        vms = tuple(_lab_client_key(vm, ssh, problems) for vm in vms)
        vms = tuple(_lab_addresses(vm, lab_subnet) for vm in vms)
    for name in passwords:
        if name not in [vm.name for vm in vms]:
            problems.append(f"{key(f'vm_passwords.{name}')}: no VM of that name in "
                            f"{key('vms')}")
    return KvmConfig(storage=str(storage), storage_shared=shared, bridges=bridges, vms=vms)


# --- bridges ------------------------------------------------------------------------------


def _bridges(raw, names: list, kvm_nodes: list, problems: list) -> tuple:
    if not isinstance(raw, list):
        problems.append(f"{key('bridges')}: must be a list of bridges (name, interfaces, ...)")
        return ()
    out, seen = [], set()
    for i, item in enumerate(raw):
        bridge = _bridge(item, f"bridges[{i}]", names, kvm_nodes, problems)
        if bridge and bridge.name in seen:
            problems.append(f"{key(f'bridges[{i}].name')}: {bridge.name!r} is listed twice")
        elif bridge:
            seen.add(bridge.name)
            out.append(bridge)
    return tuple(out)


def _bridge(item, path: str, names: list, kvm_nodes: list, problems: list):
    if not isinstance(item, dict):
        problems.append(f"{key(path)}: must be a mapping with name and interfaces")
        return None
    before = len(problems)
    unknown_keys(item, BRIDGE_FIELDS, path, problems)
    name = str(item.get("name", ""))
    if not IFNAME.fullmatch(name):
        problems.append(f"{key(path + '.name')}: {name!r} must be an interface name of at "
                        "most 15 characters, such as br0")
    interfaces = _strings(item.get("interfaces"), path + ".interfaces", problems)
    if not interfaces:
        problems.append(f"{key(path + '.interfaces')}: list the NICs the bridge goes over, "
                        "such as [ens33]")
    for nic in interfaces:
        if not IFNAME.fullmatch(nic):
            problems.append(f"{key(path + '.interfaces')}: {nic!r} is not an interface name")
    nodes = _strings(item.get("nodes", kvm_nodes), path + ".nodes", problems)
    for n in nodes:
        if n not in names:
            problems.append(f"{key(path + '.nodes')}: no node named {n!r} in "
                            f"{key('nodes')}")
    addresses = item.get("addresses") or {}
    if not isinstance(addresses, dict):
        problems.append(f"{key(path + '.addresses')}: map each node to its addresses, such "
                        "as {osd1: [10.20.10.31/24]}")
        addresses = {}
    for n, cidrs in addresses.items():
        if n not in nodes:
            problems.append(f"{key(f'{path}.addresses.{n}')}: {n!r} is not one of this "
                            "bridge's nodes")
        for cidr in _strings(cidrs, f"{path}.addresses.{n}", problems):
            if not is_interface(cidr):
                problems.append(f"{key(f'{path}.addresses.{n}')}: {cidr!r} must be an "
                                "address with prefix, such as 10.20.10.31/24")
    gateway = item.get("gateway")
    if gateway is not None and not is_ip(str(gateway)):
        problems.append(f"{key(path + '.gateway')}: {gateway!r} is not an IP address")
    nameservers = _strings(item.get("nameservers", []), path + ".nameservers", problems)
    for ns in nameservers:
        if not is_ip(ns):
            problems.append(f"{key(path + '.nameservers')}: {ns!r} is not an IP address")
    search = _strings(item.get("search", []), path + ".search", problems)
    mode = item.get("mode", "auto")
    if mode not in ("auto", "netplan", "iproute2"):
        problems.append(f"{key(path + '.mode')}: {mode!r} must be auto (netplan where it "
                        "exists, else iproute2), netplan or iproute2")
    timeout = item.get("confirm_timeout", 30)
    if not isinstance(timeout, int) or not 5 <= timeout <= 600:
        problems.append(f"{key(path + '.confirm_timeout')}: seconds between 5 and 600")
    vlan = item.get("vlan")
    if vlan is not None and (not isinstance(vlan, int) or isinstance(vlan, bool)
                             or not 1 <= vlan <= 4094):
        problems.append(f"{key(path + '.vlan')}: {vlan!r} must be a VLAN ID (1-4094)")
    bond = item.get("bond")
    if bond is not None:
        if not isinstance(bond, dict) or not IFNAME.fullmatch(str(bond.get("name", ""))):
            problems.append(f"{key(path + '.bond')}: give the bond a name, such as "
                            "{name: bond0, mode: active-backup}")
        elif bond.get("mode", "active-backup") not in BOND_MODES:
            problems.append(f"{key(path + '.bond.mode')}: {bond.get('mode')!r} is not one of "
                            f"{', '.join(BOND_MODES)}")
    if len(problems) > before:
        return None
    return BridgeConfig(vlan=vlan, bond=dict(bond) if bond else None, name=name,
                        interfaces=interfaces, nodes=nodes,
                        addresses={n: tuple(v) for n, v in addresses.items()},
                        gateway=gateway, nameservers=nameservers, search=search, mode=mode,
                        network=item.get("network") or name, confirm_timeout=timeout)


# --- VMs ----------------------------------------------------------------------------------


def _vms(raw, names: list, passwords: dict, problems: list) -> tuple:
    if not isinstance(raw, list):
        problems.append(f"{key('vms')}: must be a list of VMs (name, node, template, ...)")
        return ()
    out, seen = [], set()
    for i, item in enumerate(raw):
        vm = _vm(item, f"vms[{i}]", names, passwords, problems)
        if vm and vm.name in seen:
            problems.append(f"{key(f'vms[{i}].name')}: {vm.name!r} is listed twice; VM names "
                            "are unique in the cluster (they migrate between nodes)")
        elif vm:
            seen.add(vm.name)
            out.append(vm)
    return tuple(out)


def _vm(item, path: str, names: list, passwords: dict, problems: list):
    if not isinstance(item, dict):
        problems.append(f"{key(path)}: must be a mapping with name, node and template")
        return None
    before = len(problems)
    renamed = {"ip_timeout": "renamed to ready_timeout (up now waits until cloud-init has "
               "finished, see wait_for)",
               "password": f"a password goes in {key('vm_passwords')}, as a secret"}
    for k in set(item) & set(renamed):
        problems.append(f"{key(f'{path}.{k}')}: {renamed[k]}")
    unknown_keys({k: v for k, v in item.items() if k not in renamed}, VM_FIELDS, path,
                 problems)
    name = str(item.get("name", ""))
    if not VM_NAME.fullmatch(name):
        problems.append(f"{key(path + '.name')}: {name!r} must be letters, digits, '.', '_' "
                        "or '-' (at most 63)")
    node = item.get("node")
    if node not in names:
        problems.append(f"{key(path + '.node')}: {node!r} is not a node in {key('nodes')} "
                        f"(nodes: {', '.join(names)})")
    template = item.get("template")
    if isinstance(template, str):
        template = {"source": template}
    if not isinstance(template, dict) or not template.get("source"):
        problems.append(f"{key(path + '.template')}: give the cloud image's path on the "
                        "node, or {source: PATH, sha256: HEX}")
        template = {}
    ints = {}
    for f, (low, high, default) in VM_INTS.items():
        value = item.get(f, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not low <= value <= high):
            problems.append(f"{key(f'{path}.{f}')}: {value!r} must be a whole number from "
                            f"{low} to {high}")
        ints[f] = value
    for f, cur in (("max_memory_mib", "memory_mib"), ("max_vcpus", "vcpus")):
        if isinstance(ints[f], int) and isinstance(ints[cur], int) and ints[f] < ints[cur]:
            problems.append(f"{key(f'{path}.{f}')}: must be at least {cur} ({ints[cur]})")
    virt_type = item.get("virt_type", "auto")
    if virt_type not in ("auto", "kvm", "qemu"):
        problems.append(f"{key(path + '.virt_type')}: {virt_type!r} must be auto, kvm or qemu")
    nics = item.get("nics", [])
    if not isinstance(nics, list):
        problems.append(f"{key(path + '.nics')}: must be a list such as [{{bridge: br0}}]")
        nics = []
    for j, nic in enumerate(nics):
        if not isinstance(nic, dict) or bool(nic.get("bridge")) == bool(nic.get("network")):
            problems.append(f"{key(f'{path}.nics[{j}]')}: name exactly one of bridge or "
                            "network, such as {bridge: br0}")
    cloud_init = item.get("cloud_init") or {}
    if not isinstance(cloud_init, dict):
        problems.append(f"{key(path + '.cloud_init')}: must be a mapping (hostname, "
                        "ssh_authorized_keys, ...)")
        cloud_init = {}
    unknown_keys(cloud_init, CLOUD_INIT_KEYS, path + ".cloud_init", problems,
                 hint=" (anything else goes in user_data)")
    for j, entry in enumerate(cloud_init.get("ssh_authorized_keys") or []):
        if entry != LAB_KEY and not (isinstance(entry, str) and AUTHORIZED_KEY.fullmatch(entry)):
            problems.append(f"{key(f'{path}.cloud_init.ssh_authorized_keys[{j}]')}: must be "
                            "one public key line, such as 'ssh-ed25519 AAAA... you@host'")
    choices = {"on_restart_needed": ("restart", "fail"),
               "on_cloud_init_change": ("next-boot", "replace"), "wait_for": WAIT_FOR}
    for f, allowed in choices.items():
        if item.get(f, allowed[0]) not in allowed:
            problems.append(f"{key(f'{path}.{f}')}: must be one of {', '.join(allowed)}")
    if len(problems) > before:
        return None
    return VmConfig(
        name=name, node=node, template=template, virt_type=virt_type,
        nics=tuple(nics), cloud_init=cloud_init, password=passwords.get(name),
        autostart=boolean(item, "autostart", path + ".autostart", problems, default=True),
        on_restart_needed=item.get("on_restart_needed", "restart"),
        on_cloud_init_change=item.get("on_cloud_init_change", "next-boot"),
        wait_for=item.get("wait_for", "cloud-init"),
        keep_disk=boolean(item, "keep_disk", path + ".keep_disk", problems, default=True),
        **ints)


def _check_nics(raw: list, vms: tuple, bridges: tuple, problems: list) -> None:
    """A NIC sits on a bridge this stack makes on the VM's node (or on its libvirt
    network): a bridge that does not exist fails only when the VM starts, after `up` has
    changed other things."""
    index = {item.get("name"): i for i, item in enumerate(raw) if isinstance(item, dict)}
    for vm in vms:
        for j, nic in enumerate(vm.nics):
            where = key(f"vms[{index.get(vm.name)}].nics[{j}]")
            found = [b for b in bridges if b.name == nic.get("bridge")
                     or b.network == nic.get("network")]
            if not found:
                known = ", ".join(b.name for b in bridges) or "none"
                problems.append(f"{where}: {nic.get('bridge') or nic.get('network')!r} is not "
                                f"a bridge of {key('bridges')} (bridges: {known}); define it "
                                "there")
            elif vm.node not in found[0].nodes:
                problems.append(f"{where}: bridge {found[0].name} is not made on {vm.node} "
                                f"(its nodes: {', '.join(found[0].nodes)})")


def _resolve_lab_template(vm: VmConfig) -> VmConfig:
    import dataclasses
    source = os.path.realpath(os.path.expanduser(vm.template["source"]))
    return dataclasses.replace(vm, template={**vm.template, "source": source})


LAB_KEY = "lab-client-key"


def _lab_client_key(vm: VmConfig, ssh, problems: list) -> VmConfig:
    """In the lab, `lab-client-key` in ssh_authorized_keys stands for the lab's own client
    key (made by `lab up`, so no stack file can hold it)."""
    import dataclasses
    keys = vm.cloud_init.get("ssh_authorized_keys") or []
    if LAB_KEY not in keys:
        return vm
    try:
        with open(f"{ssh.key_file}.pub") as f:
            pub = f.read().strip()
    except (OSError, TypeError, AttributeError):
        problems.append(f"{key('vms')}: {vm.name} asks for the {LAB_KEY}, but the lab has "
                        "no client key yet; run `python -m lab up`")
        return vm
    keys = [pub if k == LAB_KEY else k for k in keys]
    return dataclasses.replace(vm, cloud_init={**vm.cloud_init, "ssh_authorized_keys": keys})


LAB_HOST = re.compile(r"\{lab_host:(\d+)\}")


def _lab_addresses(vm: VmConfig, subnet: str | None) -> VmConfig:
    """In the lab, `{lab_host:N}` in network_config is host N of this lab instance's subnet
    in CIDR form, so side-by-side labs (CEPHKVM_LAB) give their guests their own address."""
    import dataclasses
    if not subnet or "network_config" not in vm.cloud_init:
        return vm
    net = ipaddress.ip_network(subnet)

    def fill(value):
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, str):
            return LAB_HOST.sub(lambda m: f"{net[int(m.group(1))]}/{net.prefixlen}", value)
        return value
    network = fill(vm.cloud_init["network_config"])
    return dataclasses.replace(vm, cloud_init={**vm.cloud_init, "network_config": network})


# --- small checks -------------------------------------------------------------------------


def _strings(value, path: str, problems: list) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{key(path)}: must be a list of strings")
        return ()
    return tuple(value)
