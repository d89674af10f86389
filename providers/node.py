"""Node: one server as the rest of the stack sees it.

Creating a Node changes nothing on the host: it verifies the host key, and reports facts
(hostname, init system, whether KVM acceleration is available, the virt type to use).
Its `host_key` output is what other resources (pulumi_command) pin, and what every per-node
resource trusts as `state_host_key` when the config pins no key (trust on first use happens
once per stack, not once per controller).
"""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, facts
from providers.schema.node import NodeInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/node.py NodeInputs (+ ssh_private_key?; otherwise connection.key_file)
INPUTS = NodeInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class NodeProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        return CreateResult(props["node"], {**props, **_observe(props)})

    def read(self, id_, props):
        return ReadResult(id_, {**props, **_observe(props, props.get("host_key"))})

    def update(self, _id, olds, news):
        return UpdateResult({**news, **_observe(news, olds.get("host_key"))})

    def delete(self, _id, _props):
        """Nothing on the host belongs to a Node."""


def _observe(props: dict, recorded: str | None = None) -> dict:
    """Facts and the host key; a key recorded in state is trusted over a fresh first use
    (so not through Provider.node: the session trusts what this resource recorded)."""
    node = base.session(props, state_host_key=recorded)
    found = facts.parse_node_facts(node.run(facts.node_facts_argv()).stdout)
    wanted = props.get("virt_type", "auto")
    if wanted == "auto":
        wanted = "kvm" if found["kvm_available"] else "qemu"
    return {**found, "virt_type_effective": wanted, "host_key": node.host_key()}


class Node(pulumi.dynamic.Resource, module="cephkvm", name="Node"):
    hostname: pulumi.Output[str]
    init: pulumi.Output[str]
    kvm_available: pulumi.Output[bool]
    virt_type_effective: pulumi.Output[str]
    host_key: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        outputs = {
            k: None
            for k in (
                "hostname",
                "arch",
                "os",
                "init",
                "kvm_available",
                "virt_type_effective",
                "host_key",
            )
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["ssh_private_key"])
        )
        super().__init__(NodeProvider(), name, {**outputs, **props}, opts)
