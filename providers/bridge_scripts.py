"""The shell scripts and netplan documents a KvmBridge runs on its node. Pure: built from
the bridge's inputs and observed addressing, every value quoted (shlex), so tests read them
as text."""

from __future__ import annotations

import shlex

q = shlex.quote
RUN_DIR = "/run/cephkvm"
NETPLAN_DIR = "/etc/netplan"


def ports(props: dict) -> list[str]:
    """The links that join the bridge: the NICs, or the bond, or their VLAN interfaces."""
    uppers = [props["bond"]["name"]] if props.get("bond") else list(props["interfaces"])
    vlan = props.get("vlan")
    return [f"{u}.{vlan}" for u in uppers] if vlan else uppers


def member_master(props: dict) -> str:
    """What the NICs are enslaved to: the bond, or with a VLAN nothing (the VLAN interface
    sits on top of them), or the bridge itself."""
    if props.get("bond"):
        return props["bond"]["name"]
    return None if props.get("vlan") else props["name"]


def links_script(props: dict) -> list[str]:
    """iproute2 lines that make the bond and VLAN interfaces, when asked for."""
    lines, bond, vlan = [], props.get("bond"), props.get("vlan")
    if bond:
        name = bond["name"]
        lines.append(
            f"ip link show dev {q(name)} >/dev/null 2>&1 || ip link add name {q(name)}"
            f" type bond mode {q(bond.get('mode', 'active-backup'))}"
        )
        for m in props["interfaces"]:
            # A NIC joins a bond only while down.
            lines.append(
                f'[ "$(cat /sys/class/net/{q(m)}/master/ifindex 2>/dev/null)" = '
                f'"$(cat /sys/class/net/{q(name)}/ifindex)" ] || '
                f"{{ ip link set dev {q(m)} down; "
                f"ip link set dev {q(m)} master {q(name)}; }}"
            )
            lines.append(f"ip link set dev {q(m)} up")
        lines.append(f"ip link set dev {q(name)} up")
    if vlan:
        uppers = [bond["name"]] if bond else props["interfaces"]
        for u in uppers:
            lines.append(
                f"ip link show dev {q(f'{u}.{vlan}')} >/dev/null 2>&1 || ip link add "
                f"link {q(u)} name {q(f'{u}.{vlan}')} type vlan id {int(vlan)}"
            )
            lines.append(f"ip link set dev {q(u)} up")
    return lines


def apply_script(props: dict, wanted: dict) -> str:
    """iproute2: from whatever is there to the bridge with wanted addressing."""
    br, members = props["name"], props["interfaces"]
    lines = [
        "set -e",
        f"ip link show dev {q(br)} >/dev/null 2>&1 || "
        f"ip link add name {q(br)} type bridge stp_state 0",
    ]
    if wanted.get("mac"):
        lines.append(f"ip link set dev {q(br)} address {q(wanted['mac'])}")
    lines.append(f"ip link set dev {q(br)} up")
    lines += links_script(props)
    for port in ports(props):
        lines.append(f"ip link set dev {q(port)} master {q(br)} up")
    # New addresses first, then the others go: the node keeps an address throughout.
    for a in wanted["addresses"]:
        lines.append(f"ip addr replace {q(a)} dev {q(br)}")
    keep = q(" " + " ".join(wanted["addresses"]) + " ")
    lines.append(
        f"for a in $(ip -o addr show dev {q(br)} scope global | awk '{{print $4}}'); "
        f'do case {keep} in *" $a "*) ;; *) ip addr del "$a" dev {q(br)};; esac; '
        "done"
    )
    for m in members:
        lines.append(f"ip addr flush dev {q(m)} scope global")
    lines.append(f"ip route del default dev {q(br)} 2>/dev/null || true")
    if wanted.get("gateway"):
        lines.append(f"ip route replace default via {q(wanted['gateway'])} dev {q(br)}")
    return "\n".join(lines) + "\n"


def restore_script(props: dict, previous: dict) -> str:
    """iproute2: remove the bridge and give the members back their addresses and routes."""
    br = props["name"]
    lines = []
    for port in ports(props):
        lines.append(f"ip link set dev {q(port)} nomaster 2>/dev/null")
    lines.append(f"ip link del dev {q(br)} 2>/dev/null")
    if props.get("vlan"):
        lines += [f"ip link del dev {q(port)} 2>/dev/null" for port in ports(props)]
    if props.get("bond"):
        lines.append(f"ip link del dev {q(props['bond']['name'])} 2>/dev/null")
    for m in props["interfaces"]:
        lines.append(f"ip link set dev {q(m)} nomaster 2>/dev/null")
    for m in props["interfaces"]:
        lines.append(f"ip link set dev {q(m)} up")
        for a in previous.get("addresses", {}).get(m, []):
            lines.append(f"ip addr replace {q(a)} dev {q(m)}")
    for r in previous.get("routes", []):
        if r.get("via"):
            lines.append(f"ip route replace default via {q(r['via'])} dev {q(r['dev'])}")
    return "\n".join(lines) + "\ntrue\n"


def netplan_doc(props: dict, wanted: dict) -> dict:
    bridge: dict = {
        "interfaces": ports(props),
        "addresses": wanted["addresses"],
        "parameters": {"stp": False},
        "dhcp4": False,
        "dhcp6": False,
    }
    if wanted.get("mac"):
        bridge["macaddress"] = wanted["mac"]
    if wanted.get("gateway"):
        bridge["routes"] = [{"to": "default", "via": wanted["gateway"]}]
    if props.get("nameservers") or props.get("search"):
        bridge["nameservers"] = {
            "addresses": list(props.get("nameservers") or []),
            "search": list(props.get("search") or []),
        }
    net: dict = {
        "version": 2,
        "ethernets": {m: {"dhcp4": False, "dhcp6": False} for m in props["interfaces"]},
    }
    bond, vlan = props.get("bond"), props.get("vlan")
    if bond:
        net["bonds"] = {
            bond["name"]: {
                "interfaces": list(props["interfaces"]),
                "dhcp4": False,
                "dhcp6": False,
                "parameters": {"mode": bond.get("mode", "active-backup")},
            }
        }
    if vlan:
        uppers = [bond["name"]] if bond else props["interfaces"]
        net["vlans"] = {f"{u}.{vlan}": {"id": int(vlan), "link": u, "dhcp4": False} for u in uppers}
    net["bridges"] = {props["name"]: bridge}
    return {"network": net}


def netplan_path(props: dict) -> str:
    return f"{NETPLAN_DIR}/60-cephkvm-{props['name']}.yaml"


def apply(props: dict, wanted: dict, mode: str) -> str:
    if mode == "netplan":
        staged = f"{RUN_DIR}/{props['name']}.netplan"
        return (
            f"set -e\ncp {q(staged)} {q(netplan_path(props))}\n"
            f"chmod 600 {q(netplan_path(props))}\nnetplan apply\n"
        )
    return apply_script(props, wanted)


def netplan_restore(props: dict) -> str:
    backup = f"{RUN_DIR}/{props['name']}.netplan-before"
    return (
        f"if [ -e {q(backup)} ]; then cp {q(backup)} {q(netplan_path(props))}; "
        f"else rm -f {q(netplan_path(props))}; fi\nnetplan apply\n"
    )


def guard_script(timeout: int, name: str) -> str:
    """Detached on the node: apply, then wait for the controller's confirmation; without it
    restore the previous state (the controller could not reach the node any more). Whoever
    creates the `.decided` directory first (mkdir is atomic) decides: the controller to keep
    the change, the guard to roll it back; never both. It lets go of the SSH session's
    output at once: the command that started it ends at that output's EOF."""
    d = f"{RUN_DIR}/{name}"
    return (
        "exec </dev/null >/dev/null 2>&1\n"
        f"sh {q(d)}.apply > {q(d)}.log 2>&1; echo $? > {q(d)}.rc\n"
        f"i=0; while [ $i -lt {int(timeout)} ]; do\n"
        f"  [ -d {q(d)}.decided ] && exit 0; sleep 1; i=$((i+1)); done\n"
        f"mkdir {q(d)}.decided 2>/dev/null || exit 0\n"
        f"echo rolling-back > {q(d)}.state\n"
        f"sh {q(d)}.rollback >> {q(d)}.log 2>&1; echo rolled-back > {q(d)}.state\n"
    )
