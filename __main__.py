"""cephkvm: read the stack config, validate it, build the cluster, export its outputs."""
import os

import pulumi
from pulumi.runtime.config import CONFIG

from components.config import NAMESPACE, ConfigError, load
from components.node import PreparedNode


def raw_config() -> dict:
    prefix = NAMESPACE + ":"
    return {k[len(prefix):]: v for k, v in CONFIG.get().items() if k.startswith(prefix)}


try:
    stack = load(raw_config(), os.path.dirname(os.path.abspath(__file__)))
except ConfigError as err:
    raise pulumi.RunError(str(err)) from None

private_key = pulumi.Config(NAMESPACE).get_secret("ssh_private_key")
nodes = {node.name: PreparedNode(node, stack, private_key) for node in stack.nodes}
pulumi.export("nodes", {name: prepared.summary() for name, prepared in nodes.items()})
from components.ceph import CephStack  # <ceph-component>
if stack.ceph:
    ceph = CephStack(stack, nodes)
    pulumi.export("ceph", ceph.outputs())
from components.kvm import Kvm  # <kvm-component>
if stack.kvm and (stack.kvm.bridges or stack.kvm.vms):
    # VM disks live on CephFS: the VMs come after the mounts (and go before them).
    kvm = Kvm(stack, nodes, storage=[r for _, r in ceph.mounts] if stack.ceph else [])
    pulumi.export("bridges", kvm.bridge_outputs())
    pulumi.export("vms", kvm.vm_outputs())
