import json
import os

import pytest
import yaml

from components.config import BASE_PACKAGES, ConfigError, load

pytestmark = pytest.mark.unit
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def node(**kw):
    return {"name": "node1", "address": "10.0.0.1", "host_key": KEY, **kw}


def problems(raw, project_dir=ROOT):
    with pytest.raises(ConfigError) as err:
        load(raw, project_dir)
    return err.value.problems


def stack_file(name):
    with open(os.path.join(ROOT, "stacks", f"Pulumi.{name}.yaml")) as f:
        raw = yaml.safe_load(f)["config"]
    return {k.split(":", 1)[1]: v for k, v in raw.items()}


def test_minimal_config_gets_operator_defaults():
    stack = load({"nodes": json.dumps([node()])}, ROOT)
    (n,) = stack.nodes
    assert (n.port, n.user, n.roles) == (22, "root", ("mon", "mgr", "mds", "osd", "kvm"))
    assert stack.virt_type == "auto" and list(stack.packages) == BASE_PACKAGES


def test_example_stack_is_valid_and_mirrors_the_runbook():
    stack = load(stack_file("example"), ROOT)
    assert [n.name for n in stack.nodes] == ["osd1", "osd2", "osd3"]
    assert all(n.disks == ("/dev/sdb",) and n.user == "cephsvc" for n in stack.nodes)


@pytest.mark.parametrize(
    "bad, where",
    [
        ({"address": "not an address!"}, "cephkvm:nodes[0].address"),
        ({"name": "Node_1"}, "cephkvm:nodes[0].name"),
        ({"port": 70000}, "cephkvm:nodes[0].port"),
        ({"host_key": "AAAA"}, "cephkvm:nodes[0].host_key"),
        ({"host_key": None}, "cephkvm:nodes[0].host_key"),
        ({"roles": ["mon", "osdd"]}, "cephkvm:nodes[0].roles"),
        ({"disks": ["sdb"]}, "cephkvm:nodes[0].disks"),
    ],
)
def test_bad_node_names_the_key(bad, where):
    found = problems({"nodes": [node(**bad)]})
    assert any(p.startswith(where) for p in found), found


def test_duplicate_node_names_and_unknown_keys_are_refused():
    found = problems({"nodes": [node(), node(address="10.0.0.2")], "nodez": []})
    assert any("cephkvm:nodes[1].name" in p and "twice" in p for p in found)
    assert any(p.startswith("cephkvm:nodez: unknown key") for p in found)


def test_bad_virt_type_suggests_qemu():
    found = problems({"nodes": [node()], "kvm": {"virt_type": "xen"}})
    assert "use qemu" in found[0]


def test_a_missing_inventory_says_how_to_start_the_lab(tmp_path):
    found = problems({"inventory": ".lab/inventory.json"}, str(tmp_path))
    assert found[0].startswith("cephkvm:inventory: cannot read") and "make lab" in found[0]


def inventory(tmp_path, lab_dir=".lab", **extra):
    (tmp_path / lab_dir).mkdir()
    inv = {
        "ssh": {"key_file": "/k", "known_hosts": "/kh"},
        "public_network": "10.231.0.0/24",
        "nodes": [
            {
                "name": "node1",
                "address": "10.231.0.11",
                "port": 22,
                "user": "root",
                "host_key": KEY,
                "disks": ["/dev/loop3"],
            }
        ],
        **extra,
    }
    (tmp_path / lab_dir / "inventory.json").write_text(json.dumps(inv))


def test_nodes_and_ssh_come_from_the_inventory(tmp_path):
    inventory(tmp_path)
    stack = load({"inventory": ".lab/inventory.json"}, str(tmp_path))
    conn = stack.nodes[0].connection(stack.ssh)
    assert conn["host_key"] == KEY and conn["key_file"] == "/k"
    assert stack.nodes[0].disks == ("/dev/loop3",)


def test_nodes_in_the_inventory_and_the_config_are_refused(tmp_path):
    inventory(tmp_path)
    found = problems({"inventory": ".lab/inventory.json", "nodes": [node()]}, str(tmp_path))
    assert any(p.startswith("cephkvm:nodes: the nodes come from cephkvm:inventory") for p in found)


def test_a_bad_inventory_node_is_named_by_its_path(tmp_path):
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump({"nodes": [node(name="Node_1")]}))
    found = problems({"inventory": "inv.yaml"}, str(tmp_path))
    assert found[0].startswith("cephkvm:inventory.nodes[0].name: 'Node_1' must be")


def test_inventory_vars_fill_placeholders_and_the_path_takes_env_vars(tmp_path, monkeypatch):
    monkeypatch.setenv("CEPHKVM_LAB", "2")
    inventory(tmp_path, ".lab2", vars={"guest_address": "10.233.0.100/24"})
    net = {"version": 2, "ethernets": {"eth0": {"addresses": ["{inventory:guest_address}"]}}}
    vm = {
        "name": "vm1",
        "node": "node1",
        "template": "/t.qcow2",
        "cloud_init": {"network_config": net},
    }
    stack = load({"inventory": ".lab${CEPHKVM_LAB}/inventory.json", "vms": [vm]}, str(tmp_path))
    config = stack.kvm.vms[0].cloud_init.network_config
    assert config["ethernets"]["eth0"]["addresses"] == ["10.233.0.100/24"]
    vm["template"] = "{inventory:guest_image}"
    found = problems({"inventory": ".lab2/inventory.json", "vms": [vm]}, str(tmp_path))
    assert found == [
        "cephkvm:vms[0].template: {inventory:guest_image} is not in the "
        "inventory's vars (guest_address)"
    ]


def test_a_secret_of_the_wrong_type_is_not_echoed():
    found = problems({"nodes": [node()], "vm_passwords": {"vm1": 918273645}})
    assert any(p.startswith("cephkvm:vm_passwords.vm1: must be text") for p in found), found
    assert not [p for p in found if "918273645" in p]


def test_an_inventory_placeholder_without_an_inventory_is_refused():
    vm = {"name": "vm1", "node": "node1", "template": "{inventory:guest_image}"}
    found = problems({"nodes": [node()], "vms": [vm]})
    assert found == [
        "cephkvm:vms[0].template: {inventory:guest_image} needs a "
        "cephkvm:inventory file whose vars give it"
    ]


def test_an_unknown_inventory_key_is_refused(tmp_path):
    inventory(tmp_path, subnett="10.0.0.0/24")
    found = problems({"inventory": ".lab/inventory.json"}, str(tmp_path))
    assert found[0].startswith("cephkvm:inventory.subnett: unknown key; known keys: nodes")


@pytest.mark.parametrize("value", [True, {}, {"port": 9090}])
def test_cockpit_on_with_its_defaults_and_packages(value):
    stack = load({"nodes": [node(roles=["kvm"])], "kvm": {"cockpit": value}}, ROOT)
    assert (stack.cockpit.port, stack.cockpit.user) == (9090, "cockpit-admin")
    assert {"cockpit-ws", "cockpit-machines", "libvirt-dbus"} <= set(stack.packages)


def test_cockpit_off_by_default_and_a_bad_user_is_named():
    stack = load({"nodes": [node(roles=["kvm"])]}, ROOT)
    assert stack.cockpit is None and "cockpit-ws" not in stack.packages
    with pytest.raises(ConfigError) as err:
        load({"nodes": [node()], "kvm": {"cockpit": {"user": "Not A User"}}}, ROOT)
    assert "cephkvm:kvm.cockpit.user" in "\n".join(err.value.problems)
