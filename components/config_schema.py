"""The stack config's root: every `cephkvm:` key and its section's model (providers/schema/).

    python -m components.config_schema > docs/config.schema.json   # for editors
    python -m components.config_schema --readme                     # README's reference

Editors check `Pulumi.<env>.yaml` against the JSON Schema as it is typed;
tests/unit/test_config_schema.py keeps both current.
"""

from __future__ import annotations

import json
import sys

from providers.schema.ceph import Ceph, Filesystem, Mount, Pool
from providers.schema.kvm import AbsPath, Bridge, Vm
from providers.schema.node import Kvm, Node, Package, Path, Ssh
from providers.schema.types import Bool, NodeName, Section, hint

BASE_PACKAGES = (
    "openssh-server",
    "iproute2",
    "qemu-system-x86",
    "qemu-utils",
    "libvirt-daemon-system",
    "libvirt-clients",
    "cloud-image-utils",
    "ceph-mon",
    "ceph-mgr",
    "ceph-osd",
    "ceph-mds",
    "ceph-common",
    "ceph-fuse",
)
SCHEMA_FILE = "docs/config.schema.json"


class Stack(Section):
    """`cephkvm:*` of one stack."""

    # A file listing the nodes instead of `nodes` (the lab's: .lab/inventory.json); ~ and
    # $VARS are expanded, a relative path is the project directory's.
    inventory: Path | None = hint(
        None, fix="a JSON or YAML file with nodes (and ssh, public_network, vars)"
    )
    nodes: tuple[Node, ...] = hint((), fix="list at least one node (name, address, host_key)")
    ssh: Ssh = Ssh()
    # A secret (`pulumi config set --secret`); __main__ reads it as one.
    ssh_private_key: str | None = hint(None, fix="a secret: the SSH key as text")
    kvm: Kvm = Kvm()
    packages: tuple[Package, ...] = hint(BASE_PACKAGES, fix="Debian packages every node gets")
    # A YAML list of VMs in a file, for fleets too large for stack config (the engine hands
    # the program its whole config in one environment variable, capped at 128 KiB).
    vms_file: Path | None = hint(None, fix="a YAML list of VMs, added to cephkvm:vms")
    ceph: Ceph | None = hint(None, fix="without it, no Ceph")
    pools: tuple[Pool, ...] = ()
    filesystems: tuple[Filesystem, ...] = hint((), fix="CephFS filesystems")
    mounts: tuple[Mount, ...] = hint((), fix="CephFS mounts (fstab) on the nodes")
    vm_storage: AbsPath = hint("/mnt/cephfs", fix="where CephFS is mounted, e.g. /mnt/cephfs")
    vm_storage_shared: Bool = hint(
        False, fix="true: vm_storage is shared by every node although it is not CephFS"
    )
    bridges: tuple[Bridge, ...] = hint((), fix="Linux bridges for VM NICs, made node by node")
    vms: tuple[Vm, ...] = ()
    # Nodes out of service, for nodes an inventory lists (else nodes[i].maintenance).
    maintenance: tuple[NodeName, ...] = hint((), fix="names of nodes in maintenance")
    # Secrets: `pulumi config set --secret --path 'cephkvm:vm_passwords.NAME' PASSWORD`.
    vm_passwords: dict[str, str] = hint({}, fix="map a VM name to its password")


def json_schema() -> dict:
    """The JSON Schema of a Pulumi.<env>.yaml whose config holds these keys."""
    stack = Stack.model_json_schema()
    props = {f"cephkvm:{k}": v for k, v in stack.pop("properties").items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cephkvm stack config (Pulumi.<env>.yaml)",
        "type": "object",
        "properties": {
            "config": {"type": "object", "properties": props, "additionalProperties": True},
            "encryptionsalt": {"type": "string"},
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
        },
        "$defs": stack.get("$defs", {}),
    }


# --- the README's config reference -------------------------------------------------------

README_START, README_END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def reference() -> str:
    """Markdown tables of every key: type, default and what to give, from the models."""
    schema = json_schema()
    defs = schema["$defs"]
    out = [_table("Stack (`cephkvm:KEY`)", schema["properties"]["config"]["properties"], [])]
    out += [
        _table(name, d.get("properties", {}), d.get("required", []))
        for name, d in sorted(defs.items())
    ]
    return "\n".join(out)


def _table(title: str, props: dict, required: list) -> str:
    rows = [f"**{title}**", "", "| key | type | default | notes |", "| --- | --- | --- | --- |"]
    for name, p in props.items():
        value = p.get("default")
        empty = value in (None, [], {}) or (
            isinstance(value, dict) and not any(v is not None for v in value.values())
        )
        default = "required" if name in required else ("" if empty else f"`{json.dumps(value)}`")
        rows.append(f"| `{name}` | {_type(p)} | {default} | {p.get('fix', '')} |")
    return "\n".join(rows) + "\n"


def _type(p: dict) -> str:
    if "$ref" in p:
        return p["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in p:
        kinds = [_type(k) for k in p["anyOf"] if k.get("type") != "null"]
        return " or ".join(dict.fromkeys(kinds))
    if "enum" in p:
        return " \\| ".join(f"`{v}`" for v in p["enum"])
    kind = p.get("type", "any")
    if kind == "array":
        return f"list of {_type(p.get('items', {}))}"
    if kind == "object":
        extra = p.get("additionalProperties")
        return f"map to {_type(extra)}" if isinstance(extra, dict) else "mapping"
    if kind == "integer" and "minimum" in p:
        return f"integer {p['minimum']}..{p.get('maximum', '')}"
    return kind if isinstance(kind, str) else " or ".join(kind)


def readme_with_reference(readme: str) -> str:
    head, rest = readme.split(README_START, 1)
    return f"{head}{README_START}\n{reference()}{README_END}{rest.split(README_END, 1)[1]}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--readme"]:
        with open("README.md") as f:
            text = readme_with_reference(f.read())
        with open("README.md", "w") as f:
            f.write(text)
    else:
        json.dump(json_schema(), sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
