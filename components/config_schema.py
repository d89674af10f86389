"""The stack config's root: every `cephkvm:` key and its section's model (providers/schema/).
`python -m components.config_schema` writes docs/config.schema.json, which editors use to
check `Pulumi.<env>.yaml` as it is typed (tests/unit/test_config_schema.py keeps it current).
"""
from __future__ import annotations

import json
import sys

from providers.schema.ceph import Ceph, Filesystem, Mount, Pool
from providers.schema.kvm import AbsPath, Bridge, Vm
from providers.schema.node import Kvm, Node, Path, Ssh
from providers.schema.types import Bool, Section, hint

BASE_PACKAGES = ("openssh-server", "iproute2", "qemu-system-x86", "qemu-utils",
                 "libvirt-daemon-system", "libvirt-clients", "cloud-image-utils",
                 "ceph-mon", "ceph-mgr", "ceph-osd", "ceph-mds", "ceph-common", "ceph-fuse")
SCHEMA_FILE = "docs/config.schema.json"


class Stack(Section):
    """`cephkvm:*` of one stack."""
    lab: Bool = hint(False, fix="true only for the local lab (python -m lab up)")
    nodes: tuple[Node, ...] = hint((), fix="list at least one node (name, address, host_key)")
    ssh: Ssh = Ssh()
    # A secret (`pulumi config set --secret`); __main__ reads it as one.
    ssh_private_key: str | None = None
    kvm: Kvm = Kvm()
    packages: tuple[str, ...] = BASE_PACKAGES
    # A YAML list of VMs in a file, for fleets too large for stack config (the engine hands
    # the program its whole config in one environment variable, capped at 128 KiB).
    vms_file: Path | None = None
    ceph: Ceph | None = None
    pools: tuple[Pool, ...] = ()
    filesystems: tuple[Filesystem, ...] = ()
    mounts: tuple[Mount, ...] = ()
    vm_storage: AbsPath = hint("/mnt/cephfs", fix="where CephFS is mounted, e.g. /mnt/cephfs")
    vm_storage_shared: Bool = False
    bridges: tuple[Bridge, ...] = ()
    vms: tuple[Vm, ...] = ()
    # Secrets: `pulumi config set --secret --path 'cephkvm:vm_passwords.NAME' PASSWORD`.
    vm_passwords: dict[str, str] = hint({}, fix="map a VM name to its password")


def json_schema() -> dict:
    """The JSON Schema of a Pulumi.<env>.yaml whose config holds these keys."""
    stack = Stack.model_json_schema()
    props = {f"cephkvm:{k}": v for k, v in stack.pop("properties").items()}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "cephkvm stack config (Pulumi.<env>.yaml)", "type": "object",
            "properties": {"config": {"type": "object", "properties": props,
                                      "additionalProperties": True},
                           "encryptionsalt": {"type": "string"},
                           "secretsprovider": {"type": "string"},
                           "encryptedkey": {"type": "string"}},
            "$defs": stack.get("$defs", {})}


if __name__ == "__main__":
    json.dump(json_schema(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
