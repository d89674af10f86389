"""`pulumi up -s lab` on the real lab nodes, through the real engine."""

import json
import os
import subprocess

import paramiko
import pytest
import yaml

import lab
from lab import const
from providers import web_login
from tests.cli import Project
from tests.lab import browser

pytestmark = pytest.mark.lab
if os.geteuid() != 0 or not lab.inventory():
    pytest.skip("needs root and a running lab (make test brings it up)", allow_module_level=True)

NODES = [n["name"] for n in lab.inventory()["nodes"]]


def libvirt_answers(node: str) -> bool:
    return lab.run(node, ["virsh", "-c", "qemu:///system", "version"]).returncode == 0


def stop_libvirtd(node: str) -> None:
    lab.run(node, "kill $(cat /run/libvirtd.pid); sleep 1", check=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    project = Project(str(tmp_path_factory.mktemp("lab")), "lab")
    project.run("up", "--yes", "--skip-preview")
    project.first_up_log = project.ssh_log_lines()
    yield project
    project.run("destroy", "--yes", check=False)


def test_up_prepares_every_node(stack):
    nodes = stack.outputs()["nodes"]
    assert sorted(nodes) == NODES
    for name, facts in nodes.items():
        assert facts["hostname"] == name  # reported by the node itself
        assert facts["virt_type"] == "qemu" and facts["init"] == "direct"
        assert facts["daemons"] == ["virtlogd", "libvirtd"]
        assert libvirt_answers(name)


def test_the_first_up_opens_one_ssh_connection_per_node(stack):
    """Bridges included: their change is confirmed after a new TCP connection got sshd's
    banner, then over the node's own connection."""
    connects = [line.split()[1] for line in stack.first_up_log if line.startswith("connect ")]
    assert sorted(connects) == NODES, connects


def test_second_preview_has_no_changes_and_noop_up_changes_nothing(stack):
    stack.run("preview", "--expect-no-changes")
    open(stack.ssh_log, "w").close()
    stack.run("up", "--yes", "--skip-preview", "--refresh")
    log = stack.ssh_log_lines()
    assert not [line for line in log if line.startswith("change ")], log
    connects = [line.split()[1] for line in log if line.startswith("connect ")]
    assert sorted(connects) == NODES, "one SSH connection per node, reused"


def _vm(cfg):
    return cfg["cephkvm:vms"][0]


def _pool(cfg, name="cephfs_data"):
    return next(p for p in cfg["cephkvm:pools"] if p["name"] == name)


def _mount(cfg):
    return cfg["cephkvm:mounts"][0]


# (change to the lab stack config, resource, what preview must say). Each row is previewed
# by the real CLI against the state of the running lab stack; nothing is applied.
CHANGES = [
    ("pool size", lambda c: _pool(c).update(size=2), "pool-cephfs_data", "update"),
    ("pool pg_num", lambda c: _pool(c).update(pg_num=64), "pool-cephfs_data", "update"),
    (
        "pool application",
        lambda c: _pool(c).update(application="rbd"),
        "pool-cephfs_data",
        "update",
    ),
    (
        "pool quota",
        lambda c: _pool(c).update(quota_max_bytes=1 << 30),
        "pool-cephfs_data",
        "update",
    ),
    (
        "cluster option",
        lambda c: c["cephkvm:ceph"]["options"]["mon"].update(mon_data_avail_warn=3),
        "ceph-config",
        "update",
    ),
    (
        "mount options",
        lambda c: _mount(c).update(options=["noatime"]),
        "mount-node2-mnt-cephfs",
        "update",
    ),
    ("VM host (live migration)", lambda c: _vm(c).update(node="node2"), "lab-vm1", "update"),
    ("VM memory", lambda c: _vm(c).update(memory_mib=224), "lab-vm1", "update"),
    (
        "VM template",
        lambda c: _vm(c).update(template="/tmp/other-template.qcow2"),
        "lab-vm1",
        "replace",
    ),
    (
        "node virt type",
        lambda c: c["cephkvm:kvm"].update(virt_type="auto"),
        "node3-facts",
        "update",
    ),
]


@pytest.mark.parametrize(
    "what, change, resource, expected", CHANGES, ids=[row[0] for row in CHANGES]
)
def test_preview_says_update_or_replace(stack, what, change, resource, expected):
    ops = {name: step["op"] for name, step in stack.preview_changes(change).items()}
    said = ops.get(resource)
    assert said is not None and expected in said, f"{what}: {resource} -> {said}; all: {ops}"


def test_refresh_shows_a_stopped_daemon_and_up_restarts_it(stack):
    stop_libvirtd("node2")
    assert not libvirt_answers("node2")
    stack.run("refresh", "--yes", "--skip-preview")
    preview = json.loads(stack.run("preview", "--json").stdout)
    changed = [s["urn"].rsplit("::", 1)[1] for s in preview["steps"] if s["op"] == "update"]
    assert changed == ["node2-prep"]
    stack.run("up", "--yes", "--skip-preview")
    assert libvirt_answers("node2")


def test_changed_host_key_is_refused(stack):
    inventory_path = os.path.join(
        stack.dir, ".lab" + os.environ.get("CEPHKVM_LAB", ""), "inventory.json"
    )
    with open(inventory_path) as f:
        original = f.read()
    inv = json.loads(original)
    impostor = paramiko.ECDSAKey.generate()
    inv["nodes"][0]["host_key"] = f"{impostor.get_name()} {impostor.get_base64()}"
    with open(inventory_path, "w") as f:
        json.dump(inv, f)
    try:
        proc = stack.run("up", "--yes", "--skip-preview", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "node1" in out and "Refusing to connect" in out, out[-3000:]
    finally:
        with open(inventory_path, "w") as f:
            f.write(original)
    stack.run("up", "--yes", "--skip-preview")
    stack.run("preview", "--expect-no-changes")


def test_a_private_key_in_secret_config_stays_encrypted_in_state(stack):
    with open(lab.inventory()["ssh"]["key_file"]) as f:
        key = f.read()
    subprocess.run(
        ["pulumi", "config", "set", "--secret", "--stack", stack.stack, "cephkvm:ssh_private_key"],
        input=key,
        text=True,
        cwd=stack.dir,
        env=stack.env,
        check=True,
        capture_output=True,
    )
    stack.run("up", "--yes", "--skip-preview", "--refresh")  # reads every node with it
    body = "".join(key.strip().splitlines()[1:-1])
    state = stack.state_text().replace("\\n", "").replace("\n", "")
    assert body[:40] not in state and "ciphertext" in state
    assert "PRIVATE KEY" not in state, "the migration key too is only ciphertext"
    stack.run("preview", "--expect-no-changes")


def test_outputs_are_usable_through_a_stack_reference(stack):
    consumer = Project(os.path.dirname(stack.dir), "consumer", source="consumer")
    consumer.set_config("source", "organization/cephkvm/lab")
    consumer.run("up", "--yes", "--skip-preview")
    outputs = consumer.outputs()
    assert outputs["node_names"] == NODES
    assert outputs["hypervisors"] == {name: "qemu" for name in NODES}
    ceph = stack.outputs()["ceph"]
    assert outputs["ceph_csi"] == {"clusterID": ceph["fsid"], "monitors": ceph["mon_hosts"]}
    assert outputs["client_keys"] == "[secret]"
    keys = consumer.outputs(show_secrets=True)["client_keys"]
    assert sorted(keys) == [f"{n}:/mnt/cephfs" for n in NODES]
    assert all(len(k) == 40 for k in keys.values())  # a Ceph key, readable only this way
    consumer.run("destroy", "--yes", "--skip-preview")


def test_trust_on_first_use_happens_once_per_stack_not_once_per_controller(tmp_path):
    """No pinned key: the first `up` learns node1's key; a controller with an empty
    known_hosts then trusts the key in the state, and refuses another machine answering at
    node1's address (node2 stands in for an impostor)."""
    inv = lab.inventory()
    known = tmp_path / "known_hosts"
    tofu = Project(str(tmp_path), "tofu")
    node1 = next(n for n in inv["nodes"] if n["name"] == "node1")
    node2 = next(n for n in inv["nodes"] if n["name"] == "node2")

    def config(address: str) -> dict:
        return {
            "cephkvm:nodes": [{"name": "node1", "address": address, "roles": ["kvm"]}],
            "cephkvm:ssh": {
                "key_file": inv["ssh"]["key_file"],
                "known_hosts": str(known),
                "trust_on_first_use": True,
            },
            "cephkvm:kvm": {"virt_type": "qemu"},
        }

    def write(cfg: dict) -> None:
        doc = {}
        if os.path.exists(tofu.stack_file):
            with open(tofu.stack_file) as f:
                doc = yaml.safe_load(f) or {}
        doc["config"] = cfg
        with open(tofu.stack_file, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)

    write(config(node1["address"]))
    try:
        tofu.run("up", "--yes", "--skip-preview")
        assert oct(known.stat().st_mode & 0o777) == "0o600"
        assert known.read_text().startswith(f"{node1['address']} ")
        known.unlink()  # a fresh controller
        tofu.run("up", "--yes", "--skip-preview", "--refresh")
        assert not known.exists(), "trusted the state's key: nothing learned anew"
        write(config(node2["address"]))
        proc = tofu.run("up", "--yes", "--skip-preview", "--refresh", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "recorded on first contact" in out, out[-3000:]
        assert "Traceback" not in out and not known.exists()
    finally:  # state only: NodePrep's delete would stop what the lab stack relies on
        tofu.run("stack", "rm", "--yes", "--force", "--stack", "tofu", check=False)


def _dashboard_login(url: str, password: str) -> int:
    """The dashboard's answer to a login as admin, from node3 (providers/ceph_dashboard.py)."""
    login = web_login.argv("json", url.rstrip("/") + "/api/auth", "admin")
    proc = lab.run("node3", login, input=password, check=True)
    return int(proc.stdout.strip())


def test_dashboard_shows_the_cluster_healthy_in_a_browser(stack):
    stack.edit_config(lambda c: c["cephkvm:ceph"].update(dashboard=True))
    open(stack.ssh_log, "w").close()
    stack.run("up", "--yes", "--skip-preview")
    outputs = stack.outputs()
    dashboard = outputs["ceph"]["dashboard"]
    assert dashboard["user"] == "admin" and outputs["ceph_dashboard_password"] == "[secret]"
    addresses = [n["address"] for n in lab.inventory()["nodes"]]
    assert dashboard["urls"] == [f"https://{a}:8443/" for a in addresses]
    password = stack.outputs(show_secrets=True)["ceph_dashboard_password"]
    assert len(password) >= 20
    assert password not in stack.state_text() and password not in "".join(stack.ssh_log_lines())
    stack.run("preview", "--expect-no-changes")

    # node1's mgr may be a standby: it redirects the browser to the active one
    shot = os.path.join(browser.ARTIFACTS, "ceph-dashboard.png")
    seen = browser.look(
        const.netns("node3"), "dashboard", dashboard["urls"][0], "admin", password, shot
    )
    assert seen["health"] == "HEALTH_OK", seen["text"][:2000]
    assert "3 total 3 up, 3 in" in " ".join(seen["text"].split()), seen["text"][:2000]
    assert os.path.getsize(shot) > 10_000
    assert _dashboard_login(dashboard["url"], password + "x") in (400, 401)

    # the administrator removed by hand: refresh sees it, up makes it again
    lab.run("node1", ["ceph", "dashboard", "ac-user-delete", "admin"], check=True)
    changes = stack.preview_changes(lambda c: None)
    assert not changes, "a plain preview trusts the state"
    stack.run("up", "--yes", "--skip-preview", "--refresh")
    assert _dashboard_login(dashboard["url"], password) == 201
    stack.run("preview", "--refresh", "--expect-no-changes")

    # off again: the module and its account go
    stack.edit_config(lambda c: c["cephkvm:ceph"].pop("dashboard"))
    stack.run("up", "--yes", "--skip-preview")
    assert "dashboard" not in stack.outputs()["ceph"]
    modules = lab.run("node1", ["ceph", "mgr", "module", "ls", "-f", "json"], check=True).stdout
    assert "dashboard" not in json.loads(modules)["enabled_modules"]
    health = lab.run("node1", ["ceph", "health"], check=True).stdout
    assert health.startswith("HEALTH_OK"), health


def test_destroy_leaves_the_nodes_as_they_were(stack):
    stack.run("destroy", "--yes", "--skip-preview")
    for name in NODES:
        assert libvirt_answers(name), "libvirtd was running before the stack; it still is"
    assert stack.outputs() == {}
