"""cephkvm: read the stack config, validate it, build the cluster, export its outputs."""

import os

import pulumi
from pulumi.runtime.config import CONFIG

from components import sdk_drain, sdk_graph, sdk_log
from components.ceph import CephStack, destroy_allowed
from components.config import NAMESPACE, ConfigError, load
from components.kvm import Kvm
from components.node import PreparedNode
from providers.destroy_guard import DestroyGuard

sdk_drain.install()
sdk_graph.install()
sdk_log.install()


def raw_config() -> dict:
    prefix = NAMESPACE + ":"
    return {k[len(prefix) :]: v for k, v in CONFIG.get().items() if k.startswith(prefix)}


try:
    stack = load(raw_config(), os.path.dirname(os.path.abspath(__file__)))
except ConfigError as err:
    raise pulumi.RunError(str(err)) from None

private_key = pulumi.Config(NAMESPACE).get_secret("ssh_private_key")
nodes = {node.name: PreparedNode(node, stack, private_key) for node in stack.nodes}
pulumi.export("nodes", {name: prepared.summary() for name, prepared in nodes.items()})
pulumi.export("maintenance", list(stack.maintenance.nodes))

with_kvm = bool(stack.kvm and (stack.kvm.bridges or stack.kvm.vms or stack.cockpit))
# The bridges first: a node's Ceph daemons come after the bridge their address moves to.
kvm = Kvm(stack, nodes) if with_kvm else None

mounts: dict = {}  # node -> its CephFS mounts
gate = None  # the Maintenance resource, while a node is in maintenance
if stack.ceph:
    ceph = CephStack(stack, nodes, network=kvm.network() if kvm else {})
    outputs = ceph.outputs()
    # Apart, so that a StackReference reads the rest of `ceph` as plain values.
    pulumi.export("ceph_client_keys", outputs.pop("client_keys"))
    if "dashboard" in outputs:
        password = outputs["dashboard"].pop("password")
        pulumi.export("ceph_dashboard_password", pulumi.Output.secret(password))
    pulumi.export("ceph", outputs)
    for mount, resource in ceph.mounts:
        mounts.setdefault(mount["node"], []).append(resource)
    gate = ceph.gate

if kvm:
    # VM disks live on CephFS: the VMs come after the mounts (and go before them).
    kvm.place_vms(stack, nodes, storage=mounts, gate=gate)
    pulumi.export("bridges", kvm.bridge_outputs())
    pulumi.export("vms", kvm.vm_outputs(stack))
    if stack.cockpit:
        pulumi.export("cockpit", kvm.cockpit_outputs(stack))
        pulumi.export("cockpit_password", pulumi.Output.secret(kvm.cockpit_password.password))

if stack.ceph:
    # Deleted first by a destroy, and protected unless data may be lost: a destroy stops
    # before any VM, mount or bridge is removed (providers/destroy_guard.py).
    every = ceph.resources() + (kvm.resources() if kvm else [])
    allowed = destroy_allowed(stack.ceph)
    DestroyGuard(
        {
            "allow": allowed,
            "guards": f"Ceph cluster {stack.ceph.cluster_name} and everything on it",
        },
        pulumi.ResourceOptions(depends_on=every, protect=not allowed),
    )
