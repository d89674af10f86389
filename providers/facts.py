"""Facts: a read-only command and a parser for its output. Parsers are pure and tested from
captured output; nothing here changes a node."""

from __future__ import annotations

import shlex

# One round trip for what node preparation needs to know.
NODE_FACTS_SCRIPT = "; ".join(
    [
        "echo hostname=$(hostname)",
        "echo arch=$(uname -m)",
        '. /etc/os-release 2>/dev/null; echo os="$PRETTY_NAME"',
        "[ -d /run/systemd/system ] && echo init=systemd || echo init=direct",
        "[ -r /dev/kvm ] && [ -w /dev/kvm ] && echo kvm_device=yes || echo kvm_device=no",
        "grep -qE '(vmx|svm)' /proc/cpuinfo && echo cpu_virt=yes || echo cpu_virt=no",
    ]
)


def node_facts_argv() -> list[str]:
    return ["sh", "-c", NODE_FACTS_SCRIPT]


def parse_node_facts(text: str) -> dict:
    raw = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {
        "hostname": raw.get("hostname", ""),
        "arch": raw.get("arch", ""),
        "os": raw.get("os", ""),
        "init": raw.get("init", "direct"),
        "kvm_available": raw.get("kvm_device") == "yes" and raw.get("cpu_virt") == "yes",
    }


def missing_packages_argv(packages: list[str]) -> list[str]:
    """Prints the packages of the list that dpkg does not have installed, one per line."""
    script = (
        "for p in " + " ".join(shlex.quote(p) for p in packages) + "; do "
        "dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q 'install ok installed' "
        '|| echo "$p"; done'
    )
    return ["sh", "-c", script]


def parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]
