"""CephStack under pulumi's mocks: what the example stack registers, offline."""

import pulumi
import pytest

from components.config import load
from tests.unit.test_config import ROOT, stack_file

pytestmark = pytest.mark.unit


@pulumi.runtime.test
def test_example_registers_the_ceph_tree(mocks):
    from components.ceph import CephStack
    from components.node import PreparedNode

    stack = load(stack_file("example"), ROOT)
    nodes = {n.name: PreparedNode(n, stack) for n in stack.nodes}
    ceph = CephStack(stack, nodes)

    def check(_):
        found = {(typ.rsplit(":", 1)[1], name): inputs for typ, name, inputs in mocks.registered}
        cluster = found[("CephCluster", "ceph-cluster")]
        assert cluster["mons"] == ["osd1", "osd2", "osd3"]
        assert cluster["public_network"] == "10.204.10.0/24"
        # Ceph's addresses are the nodes' public-network ones; SSH still goes to `address`.
        assert [n["address"] for n in cluster["nodes"]] == [
            "10.204.10.31",
            "10.204.10.32",
            "10.204.10.33",
        ]
        for kind, prefix in (("CephMon", "mon"), ("CephMgr", "mgr"), ("CephMds", "mds")):
            names = sorted(n for k, n in found if k == kind)
            assert names == [f"{prefix}-osd1", f"{prefix}-osd2", f"{prefix}-osd3"], kind
        assert found[("CephMon", "mon-osd2")]["address"] == "10.204.10.32"
        assert found[("CephMon", "mon-osd2")]["connection"]["address"] == "10.20.10.32"
        assert found[("CephMds", "mds-osd3")]["connection"]["address"] == "10.20.10.33"
        config = found[("CephConfig", "ceph-config")]
        assert config["mons"] == ["osd1", "osd2", "osd3"] and len(config["admin"]) == 3
        osd = found[("CephOsd", "osd-osd2-sdb")]
        assert (osd["device"], osd["method"], osd["wipe"]) == ("/dev/sdb", "lvm", False)
        assert found[("CephPool", "pool-cephfs_data")]["pg_num"] == 64
        fs = found[("CephFilesystem", "fs-cephfs")]
        assert (fs["metadata_pool"], fs["data_pool"]) == ("cephfs_meta", "cephfs_data")
        mounts = sorted(n for kind, n in found if kind == "CephFSMount")
        assert mounts == ["mount-osd1-mnt-cephfs", "mount-osd2-mnt-cephfs", "mount-osd3-mnt-cephfs"]
        assert ("CephStack", "ceph") in found

    return pulumi.Output.all(*[r.id for _, r in ceph.mounts]).apply(check)


@pulumi.runtime.test
def test_cluster_wide_resources_carry_a_few_admin_nodes_mons_first(mocks):
    """Pools, filesystems and every mount run `ceph` on the first admin node that answers:
    five are plenty, and a list of every node in every mount grew the state with nodes
    times mounts (26 KB a mount at 50 nodes)."""
    from components.ceph import ADMIN_NODES, CephStack
    from components.node import PreparedNode

    raw = stack_file("example")
    template = raw["nodes"][0]
    raw["nodes"] = [
        {
            **template,
            "name": f"osd{i}",
            "address": f"10.20.10.{30 + i}",
            "ceph_address": f"10.204.10.{30 + i}",
            "roles": ["mon", "mgr", "mds", "osd", "kvm"] if i > 4 else ["osd", "kvm"],
        }
        for i in range(1, 8)
    ]
    raw["bridges"][0]["addresses"] = {n["name"]: [f"{n['address']}/24"] for n in raw["nodes"]}
    stack = load(raw, ROOT)
    nodes = {n.name: PreparedNode(n, stack) for n in stack.nodes}
    ceph = CephStack(stack, nodes)

    def check(_):
        found = {(typ.rsplit(":", 1)[1], name): inputs for typ, name, inputs in mocks.registered}
        for key in (("CephConfig", "ceph-config"), ("CephFSMount", "mount-osd1-mnt-cephfs")):
            admin = [a["connection"]["name"] for a in found[key]["admin"]]
            assert admin == ["osd5", "osd6", "osd7", "osd1", "osd2"] and ADMIN_NODES == 5, admin

    return pulumi.Output.all(*[r.id for _, r in ceph.mounts]).apply(check)
