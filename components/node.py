"""PreparedNode: a node's facts plus the packages and daemons it needs."""
from __future__ import annotations

from typing import Optional

import pulumi

from components.config import NodeConfig, StackConfig
from providers.node import Node
from providers.node_prep import NodePrep

DAEMONS = ["virtlogd", "libvirtd"]


class PreparedNode(pulumi.ComponentResource):
    def __init__(self, node: NodeConfig, stack: StackConfig,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cephkvm:index:PreparedNode", node.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        connection = node.connection(stack.ssh)
        self.node = Node(f"{node.name}-facts", {
            "node": node.name, "connection": connection, "virt_type": stack.virt_type,
        }, child)
        self.prep = NodePrep(f"{node.name}-prep", {
            "node": node.name, "connection": connection,
            "packages": list(stack.packages), "daemons": DAEMONS,
        }, pulumi.ResourceOptions(parent=self, depends_on=[self.node]))
        self.register_outputs({"hostname": self.node.hostname,
                               "virt_type": self.node.virt_type_effective})

    def summary(self) -> pulumi.Output:
        return pulumi.Output.all(
            hostname=self.node.hostname, init=self.node.init,
            kvm_available=self.node.kvm_available, virt_type=self.node.virt_type_effective,
            daemons=self.prep.running,
        )
