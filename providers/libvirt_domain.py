"""Libvirt domain XML for a CloudVM, and small parsers of what libvirt reports. Pure: no
connection is opened here, so all of it is tested from strings."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

# Under TCG QEMU's default translation cache is 1 GiB (RSS 1.3 GB for a 512 MiB guest);
# 128 MiB halves the footprint at no visible cost for small guests (DESIGN.md 5).
TCG_CACHE_MIB = 128
AGENT_CHANNEL = "org.qemu.guest_agent.0"
# Domains cephkvm made carry this in <metadata>: a domain of the same name without it (or of
# another stack) is someone else's and is never adopted, changed or shut down.
OWNER_NS = "https://cephkvm.dev/xmlns/vm/1"


def stable_mac(name: str, index: int) -> str:
    """A MAC from the VM's name and NIC index: the same on every run and every node, in
    QEMU's locally administered 52:54:00 range."""
    digest = hashlib.sha256(f"{name}/{index}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def nic_macs(name: str, nics: list[dict]) -> list[str]:
    return [nic.get("mac") or stable_mac(name, i) for i, nic in enumerate(nics)]


def interface_xml(nic: dict, mac: str) -> str:
    if nic.get("bridge"):
        kind, source = "bridge", f"<source bridge={quoteattr(nic['bridge'])}/>"
    else:
        kind, source = "network", f"<source network={quoteattr(nic['network'])}/>"
    model = nic.get("model", "virtio")
    return (
        f"<interface type='{kind}'><mac address={quoteattr(mac)}/>{source}"
        f"<model type={quoteattr(model)}/></interface>"
    )


def cdrom_xml(seed_path: str) -> str:
    # i440fx ('pc') machines have IDE, not SATA, without extra controllers.
    return (
        f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
        f"<source file={quoteattr(seed_path)}/><target dev='hdc' bus='ide'/>"
        f"<readonly/></disk>"
    )


def domain_xml(p: dict) -> str:
    """p: name, uuid?, owner, virt_type, memory_mib, max_memory_mib, vcpus, max_vcpus,
    disk_path, seed_path, nics, macs, serial_log."""
    tcg = p["virt_type"] == "qemu"
    features = "<acpi/><apic/>"
    if tcg:
        features += f"<tcg><tb-cache unit='MiB'>{TCG_CACHE_MIB}</tb-cache></tcg>"
    cpu = "" if tcg else "<cpu mode='host-passthrough'/>"
    nics = "".join(interface_xml(n, m) for n, m in zip(p["nics"], p["macs"]))
    uuid = f"<uuid>{_text(p['uuid'])}</uuid>" if p.get("uuid") else ""
    log = f"<log file={quoteattr(p['serial_log'])} append='on'/>" if p.get("serial_log") else ""
    owner = f"<cephkvm:owner>{_text(p.get('owner') or '')}</cephkvm:owner>"
    return f"""<domain type={quoteattr(p["virt_type"])}>
  <name>{_text(p["name"])}</name>{uuid}
  <metadata><cephkvm:vm xmlns:cephkvm={quoteattr(OWNER_NS)}>{owner}</cephkvm:vm></metadata>
  <memory unit='MiB'>{int(p["max_memory_mib"])}</memory>
  <currentMemory unit='MiB'>{int(p["memory_mib"])}</currentMemory>
  <vcpu placement='static' current='{int(p["vcpus"])}'>{int(p["max_vcpus"])}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features>{features}</features>{cpu}
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>
      <source file={quoteattr(p["disk_path"])}/><target dev='vda' bus='virtio'/></disk>
    {cdrom_xml(p["seed_path"])}
    {nics}
    <serial type='pty'>{log}<target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'><target type='virtio' name='{AGENT_CHANNEL}'/></channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='virtio'/>
  </devices>
</domain>"""


def vm_xml(p: dict, paths: dict, uuid: str | None = None) -> str:
    """A CloudVM's domain from its inputs and its files (vm_storage.paths); uuid keeps a
    redefined domain the same one."""
    return domain_xml(
        {
            **p,
            "disk_path": paths["disk"],
            "seed_path": paths["seed"],
            "uuid": uuid,
            "macs": nic_macs(p["name"], p["nics"]),
            "serial_log": f"/var/log/libvirt/qemu/{p['name']}-serial.log",
        }
    )


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- parsing what libvirt reports -------------------------------------------------------


def parse_domain(xml: str) -> dict:
    """The fields of a defined domain a CloudVM compares with its inputs."""
    root = ET.fromstring(xml)
    vcpu = root.find("vcpu")
    nics = []
    for iface in root.findall("devices/interface"):
        src = iface.find("source")
        nic = {"mac": iface.find("mac").get("address")}
        if iface.get("type") == "bridge":
            nic["bridge"] = src.get("bridge")
        else:
            nic["network"] = src.get("network")
        nics.append(nic)
    disk = root.find("devices/disk[@device='disk']/source")
    cdrom = root.find("devices/disk[@device='cdrom']/source")
    return {
        "uuid": root.findtext("uuid"),
        "virt_type": root.get("type"),
        "max_memory_mib": _mib(root.find("memory")),
        "memory_mib": _mib(root.find("currentMemory")),
        "max_vcpus": int(vcpu.text),
        "vcpus": int(vcpu.get("current", vcpu.text)),
        "nics": nics,
        "disk_path": disk.get("file") if disk is not None else None,
        "seed_path": cdrom.get("file") if cdrom is not None else None,
    }


def owner(xml: str) -> str | None:
    """The stack that made the domain (its cephkvm metadata), or None: not cephkvm's."""
    found = ET.fromstring(xml).find(f"metadata/{{{OWNER_NS}}}vm/{{{OWNER_NS}}}owner")
    return None if found is None else (found.text or "")


def _mib(elem) -> int:
    factor = {
        "KiB": 1 / 1024,
        "k": 1 / 1024,
        "MiB": 1,
        "M": 1,
        "GiB": 1024,
        "G": 1024,
        "b": 1 / 1024 / 1024,
        "bytes": 1 / 1024 / 1024,
    }[elem.get("unit", "KiB")]
    return int(int(elem.text) * factor)


STATES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}


def state_name(code: int) -> str:
    return STATES.get(code, "unknown")


def addresses(ifaces: dict, macs: list[str]) -> list[str]:
    """IPv4/IPv6 addresses of the guest's NICs (by MAC) from interfaceAddresses()."""
    found = []
    for info in (ifaces or {}).values():
        if (info.get("hwaddr") or "").lower() not in [m.lower() for m in macs]:
            continue
        for addr in info.get("addrs") or []:
            ip = addr.get("addr")
            if ip and not ip.startswith("fe80:"):
                found.append(ip)
    return sorted(found)
