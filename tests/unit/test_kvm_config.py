"""The kvm keys of the stack config, and the Kvm component under pulumi's mocks."""

import pulumi
import pytest
import yaml

from components.config import load
from tests.unit.test_config import ROOT, node, problems, stack_file

pytestmark = pytest.mark.unit

VM = {"name": "virt-01", "node": "node1", "template": "/img/bionic.img"}
BRIDGE = {"name": "br0", "interfaces": ["ens33"]}


def raw(**kw):
    return {"nodes": [node(), node(name="node2", address="10.0.0.2")], **kw}


def test_example_stack_has_the_runbook_bridge_and_vm():
    kvm = load(stack_file("example"), ROOT).kvm
    assert kvm.storage == "/mnt/cephfs" and not kvm.storage_shared
    br = kvm.bridges[0]
    assert (br.name, br.interfaces, br.gateway) == ("br0", ("ens33",), "10.20.10.2")
    assert br.addresses["osd1"] == ("10.20.10.31/24",)
    assert br.addresses["osd3"] == ("10.20.10.33/24",)
    assert br.nameservers == ("10.20.10.11", "10.20.10.12")
    assert br.search == ("intranet.mycooldomain.com",)
    assert br.nodes == ("osd1", "osd2", "osd3")
    vm = kvm.vms[0]
    assert (vm.name, vm.node, vm.memory_mib, vm.vcpus, vm.virt_type) == (
        "virt-01",
        "osd1",
        512,
        1,
        "kvm",
    )
    assert vm.template.model_dump(exclude_none=True) == {
        "source": "/home/cephsvc/bionic-server-cloudimg-amd64.img"
    }


def test_defaults():
    kvm = load(raw(vms=[VM]), ROOT).kvm
    assert kvm.storage == "/mnt/cephfs" and kvm.bridges == ()
    vm = kvm.vms[0]
    assert vm.virt_type == "auto" and vm.disk_gib == 10 and kvm.passwords == {}


def test_a_node_with_a_problem_is_named_once_not_by_the_bridge_and_vm_on_it():
    bad = raw(
        bridges=[{**BRIDGE, "addresses": {"node1": ["10.0.0.1/24"]}}],
        vms=[{**VM, "nics": [{"bridge": "br0"}], "fallback_node": "node2"}],
    )
    bad["nodes"][0]["address"] = "10.0.0.300"
    assert problems(bad) == [
        "cephkvm:nodes[0].address: '10.0.0.300' is not an IP address or host name"
    ]


def test_errors_name_the_key_path_and_the_fix():
    found = problems(
        raw(
            vm_storage="relative/dir",
            bridges=[{**BRIDGE, "addresses": {"node1": ["10.0.0.5"]}, "gateway": "nope"}],
            vms=[
                {
                    **VM,
                    "password": "x",
                    "memory_mib": 16,
                    "nics": [{"bridge": "br0", "network": "default"}],
                    "cloud_init": {"hostnam": "x"},
                }
            ],
            vm_passwords={"nobody": "x"},
        )
    )
    text = "\n".join(found)
    for expected in (
        "cephkvm:vm_storage: 'relative/dir' must be an absolute directory",
        "cephkvm:bridges[0].addresses.node1[0]: '10.0.0.5' must be an address with prefix",
        "cephkvm:bridges[0].gateway: 'nope' is not an IP address",
        "cephkvm:vms[0].password: a password goes in cephkvm:vm_passwords",
        "goes in cephkvm:vm_passwords, as a secret",
        "cephkvm:vms[0].memory_mib: 16 must be a whole number from 64 to",
        "cephkvm:vms[0].nics[0].network: name exactly one of bridge or network",
        "cephkvm:vms[0].cloud_init.hostnam: unknown key",
        "cephkvm:vm_passwords.nobody: no VM of that name",
    ):
        assert expected in text, text


def test_rules_across_sections_name_the_key_path_and_the_fix():
    """Checked once each section's own shape is valid."""
    text = "\n".join(
        problems(
            raw(bridges=[{**BRIDGE, "nodes": ["node1", "node9"]}], vms=[{**VM, "node": "node7"}])
        )
    )
    for expected in (
        "cephkvm:bridges[0].nodes: no node named 'node9'",
        "cephkvm:vms[0].node: 'node7' is not a node",
    ):
        assert expected in text, text


def test_password_comes_from_the_secret_map():
    kvm = load(raw(vms=[VM], vm_passwords={"virt-01": "s3cret"}), ROOT).kvm
    assert kvm.passwords == {"virt-01": "s3cret"}


def test_duplicate_vm_names_are_refused():
    found = problems(raw(vms=[VM, {**VM, "node": "node2"}]))
    assert any("cephkvm:vms[1].name: 'virt-01' is listed twice" in p for p in found)


def test_snapshots_and_restores_are_checked():
    restored = {**VM, "name": "virt-02", "template": {"snapshot": "virt-01@before"}}
    kvm = load(raw(vms=[{**VM, "snapshots": ["before"]}, restored]), ROOT).kvm
    assert kvm.vms[0].snapshots == ("before",)
    assert kvm.vms[1].template.snapshot == "virt-01@before"
    found = problems(raw(vms=[{**VM, "snapshots": ["a", "a"]}]))
    assert found == ["cephkvm:vms[0].snapshots: a listed twice"]
    both = {**VM, "template": {"source": "/img/x.img", "snapshot": "virt-01@a"}}
    assert "give exactly one of source" in problems(raw(vms=[both]))[0]
    assert problems(raw(vms=[{**VM, "snapshots": ["a"], "rollback_to": "b"}])) == [
        "cephkvm:vms[0].rollback_to: 'b' is not one of its snapshots (a); list it in "
        "cephkvm:vms[0].snapshots"
    ]
    own = {**VM, "template": {"snapshot": "virt-01@a"}}
    assert problems(raw(vms=[own])) == [
        "cephkvm:vms[0].template.snapshot: 'virt-01@a' makes a VM from its own snapshot "
        "(virt-01 -> virt-01); name a snapshot of another VM"
    ]


def test_a_backup_target_is_a_directory_of_its_own():
    vm = {**VM, "backup": {"target": "/mnt/cephfs/backups", "keep": 3}}
    assert load(raw(vms=[vm]), ROOT).kvm.vms[0].backup.full_every == 7
    for inside in ("/mnt/cephfs/virtualmachines/bk", "/mnt/cephfs", "/mnt/cephfs/config"):
        found = problems(raw(vms=[{**VM, "backup": {"target": inside}}]))
        assert len(found) == 1 and found[0].startswith("cephkvm:vms[0].backup.target: "), found
        assert "such as /mnt/cephfs/backups" in found[0]
    found = problems(raw(vms=[{**VM, "backup": {"target": "/b", "keep": 0, "every": 1}}]))
    assert sorted(p.split(":")[1] for p in found) == ["vms[0].backup.every", "vms[0].backup.keep"]


@pulumi.runtime.test
def test_snapshots_follow_their_vm_and_a_restore_its_snapshot(mocks):
    from components.kvm import Kvm
    from components.node import PreparedNode

    config = stack_file("example")
    source = {**config["vms"][0], "snapshots": ["before"], "backup": {"target": "/bk"}}
    restored = {**source, "name": "virt-02", "template": {"snapshot": "virt-01@before"}}
    restored.pop("snapshots")
    restored.pop("backup")
    config["vms"] = [restored, source]  # the restore listed first
    stack = load(config, ROOT)
    nodes = {n.name: PreparedNode(n, stack) for n in stack.nodes}
    kvm = Kvm(stack, nodes)
    kvm.place_vms(stack, nodes)
    assert list(kvm.vms) == ["virt-01", "virt-02"]
    snap = kvm.snapshots["virt-01@before"]

    def check(_):
        by_name = {name: (typ, inputs) for typ, name, inputs in mocks.registered}
        typ, inputs = by_name["virt-01@before"]
        assert typ.endswith("VmSnapshot")
        assert (inputs["vm"], inputs["name"], inputs["node"]) == ("virt-01", "before", "osd1")
        assert "snapshots" not in by_name["virt-01"][1]  # the VM itself does not change
        assert "backup" not in by_name["virt-01"][1]
        typ, inputs = by_name["virt-01-backup"]
        assert typ.endswith("VmBackup") and (inputs["target"], inputs["keep"]) == ("/bk", 7)

    return pulumi.Output.all(snap.id, kvm.vms["virt-02"].id).apply(check)


UPGRADED_VM_INPUTS = {
    *("autostart", "cloud_init", "connection", "disk_gib", "keep_disk", "max_memory_mib"),
    *("max_vcpus", "memory_mib", "migration_key", "name", "nics", "node"),
    *("on_cloud_init_change", "on_restart_needed", "owner", "ready_timeout"),
    *("shared_storage", "shutdown_timeout", "storage", "template", "vcpus", "virt_type"),
    "wait_for",
}


@pulumi.runtime.test
def test_component_rolls_bridges_node_by_node_and_vms_after_them(mocks):
    from components.kvm import Kvm
    from components.node import PreparedNode

    stack = load(stack_file("example"), ROOT)
    nodes = {n.name: PreparedNode(n, stack) for n in stack.nodes}
    kvm = Kvm(stack, nodes)
    kvm.place_vms(stack, nodes)

    def check(_):
        by_name = {name: (typ, inputs) for typ, name, inputs in mocks.registered}
        assert by_name["osd2-br0"][0].endswith("KvmBridge")
        assert by_name["osd2-br0"][1]["addresses"] == ["10.20.10.32/24"]
        assert by_name["osd2-br0"][1]["gateway"] == "10.20.10.2"
        vm = by_name["virt-01"][1]
        # What an existing VM's state holds: a key added here (a new field whose default is
        # not None) shows every VM of every stack as changed after an upgrade.
        assert set(vm) - {"__provider"} == UPGRADED_VM_INPUTS, set(vm) ^ UPGRADED_VM_INPUTS
        assert vm["storage"] == "/mnt/cephfs" and vm["virt_type"] == "kvm"
        # no VM carries the other nodes (the state grows with VMs plus nodes): each node's
        # MigrationAccess keeps them, where a VM's read looks when it was moved by hand
        access = by_name["osd2-migration"][1]
        assert [p["name"] for p in access["peer_nodes"]] == ["osd1", "osd2", "osd3"]
        assert all(p.get("host_key") or p.get("state_host_key") for p in access["peer_nodes"])
        assert vm["nics"] == [{"bridge": "br0"}]

    ids = [b.id for per in kvm.bridges.values() for b in per.values()] + [
        vm.id for vm in kvm.vms.values()
    ]
    return pulumi.Output.all(*ids).apply(check)


def test_bridge_vlan_and_bond_are_checked():
    kvm = load(
        raw(
            bridges=[
                {
                    **BRIDGE,
                    "interfaces": ["ens33", "ens34"],
                    "vlan": 10,
                    "bond": {"name": "bond0", "mode": "802.3ad"},
                }
            ]
        ),
        ROOT,
    ).kvm
    assert kvm.bridges[0].vlan == 10
    assert kvm.bridges[0].bond.model_dump() == {"name": "bond0", "mode": "802.3ad"}
    found = "\n".join(
        problems(raw(bridges=[{**BRIDGE, "vlan": 9999, "bond": {"name": "bond0", "mode": "fast"}}]))
    )
    assert "cephkvm:bridges[0].vlan: 9999 must be a whole number from 1 to 4094" in found
    assert "cephkvm:bridges[0].bond.mode: 'fast' is not one of" in found


def test_vms_can_come_from_a_file_for_large_fleets(tmp_path):
    (tmp_path / "vms.yaml").write_text(
        yaml.safe_dump([{**VM, "name": f"virt-{i}"} for i in range(3)])
    )
    stack = load(raw(vms=[VM], vms_file="vms.yaml"), str(tmp_path))
    assert [vm.name for vm in stack.kvm.vms] == ["virt-01", "virt-0", "virt-1", "virt-2"]


def test_an_unreadable_vms_file_is_named(tmp_path):
    found = problems(raw(vms_file="missing.yaml"), str(tmp_path))
    assert any(p.startswith("cephkvm:vms_file: cannot read") for p in found)


@pulumi.runtime.test
def test_kvm_nodes_say_how_virsh_reaches_them_with_the_host_key_pinned(mocks):
    from components.node import PreparedNode

    stack = load(stack_file("example"), ROOT)
    from tests.unit.test_config import KEY

    osd1 = next(n for n in stack.nodes if n.name == "osd1").model_copy(update={"host_key": KEY})
    on_port = osd1.model_copy(update={"port": 2222, "name": "osd9"})

    def check(both):
        plain, ported = both
        assert plain["libvirt"] == {
            "uri": "qemu+ssh://cephsvc@10.20.10.31/system",
            "known_hosts": f"10.20.10.31 {KEY}",
        }
        assert ported["libvirt"]["uri"] == "qemu+ssh://cephsvc@10.20.10.31:2222/system"
        assert ported["libvirt"]["known_hosts"].startswith("[10.20.10.31]:2222 ssh-")

    return pulumi.Output.all(
        PreparedNode(osd1, stack).summary(), PreparedNode(on_port, stack).summary()
    ).apply(check)
