"""Reads a cephkvm stack's outputs the way other infrastructure would (e.g. ceph-csi for a
Kubernetes cluster on the nodes) and re-exports what it consumed."""

import pulumi

config = pulumi.Config()
source = pulumi.StackReference(config.require("source"))  # e.g. organization/cephkvm/lab

nodes = source.require_output("nodes")
pulumi.export("node_names", nodes.apply(lambda n: sorted(n)))
pulumi.export(
    "hypervisors", nodes.apply(lambda n: {name: facts["virt_type"] for name, facts in n.items()})
)
ceph = source.get_output("ceph")
pulumi.export("ceph_csi", ceph.apply(lambda c: c and c.get("csi")))
pulumi.export("client_keys", source.get_output("ceph_client_keys"))  # stays a secret
