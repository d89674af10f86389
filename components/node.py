"""PreparedNode: a node's facts plus the packages and daemons it needs."""

from __future__ import annotations

from typing import Optional

import pulumi

from components.config import StackConfig
from providers.node import Node
from providers.node_prep import NodePrep
from providers.schema import node as spec

DAEMONS = ["virtlogd", "libvirtd"]


class PreparedNode(pulumi.ComponentResource):
    def __init__(
        self,
        node: spec.Node,
        stack: StackConfig,
        private_key: Optional[pulumi.Output] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("cephkvm:index:PreparedNode", node.name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        secret = {} if private_key is None else {"ssh_private_key": private_key}
        self.node = Node(
            f"{node.name}-facts",
            {
                "node": node.name,
                "connection": node.connection(stack.ssh),
                **secret,
                "virt_type": stack.virt_type,
            },
            child,
        )
        self.connection = node.connection(stack.ssh)
        self.kvm = "kvm" in node.roles
        if not node.host_key:  # trust on first use happens once: then the key from state
            self.connection["state_host_key"] = self.node.host_key
        # Every per-node resource takes these inputs; the key stays a secret.
        self.access = {"connection": self.connection, **secret}
        self.prep = NodePrep(
            f"{node.name}-prep",
            {
                "node": node.name,
                **self.access,
                "packages": list(stack.packages),
                "daemons": DAEMONS,
                "groups": ["libvirt"],
            },
            pulumi.ResourceOptions(
                parent=self, depends_on=[self.node], additional_secret_outputs=["ssh_private_key"]
            ),
        )
        self.register_outputs(
            {"hostname": self.node.hostname, "virt_type": self.node.virt_type_effective}
        )

    def summary(self) -> pulumi.Output:
        return pulumi.Output.all(
            hostname=self.node.hostname,
            init=self.node.init,
            kvm_available=self.node.kvm_available,
            virt_type=self.node.virt_type_effective,
            daemons=self.prep.running,
            **({"libvirt": self.libvirt()} if self.kvm else {}),
        )

    def libvirt(self) -> pulumi.Output:
        """How virsh and virt-manager reach this node's libvirtd: its URI (the SSH user is
        in the libvirt group), and the known_hosts line that pins the node's host key."""
        c = self.connection
        address, port = c["address"], c.get("port") or 22
        known = address if port == 22 else f"[{address}]:{port}"
        at = (f"[{address}]" if ":" in address else address) + ("" if port == 22 else f":{port}")
        uri = f"qemu+ssh://{c['user']}@{at}/system"
        key = pulumi.Output.from_input(c.get("host_key") or self.node.host_key)
        return key.apply(lambda k: {"uri": uri, "known_hosts": f"{known} {k}"})
