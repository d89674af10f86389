"""KvmBridge: its pure parts (facts parser, iproute2 and netplan output, the guard) run for
real where they can: the scripts in a throwaway network namespace, netplan's own validator."""

import contextlib
import json
import os
import shutil
import subprocess

import libvirt
import pytest
import yaml

from providers import bridge_scripts as bs
from providers import kvm_bridge as kb
from providers.kvm_bridge import KvmBridgeProvider
from tests.unit.fakes import CONTENT_WRITES, FakeNode, Handlers, captured, connection

pytestmark = pytest.mark.unit

CONN = connection("node1")
PROPS = {"node": "node1", "connection": CONN, "name": "br0", "interfaces": ["eth0"]}

# Captured on a lab node with br0 over eth0 (`ip -j addr`, `ip -j route`).
IP_ADDR = captured("ip_addr_bridged.json").strip()
IP_ROUTE = captured("ip_route_bridged.json").strip()


def checked(**change):
    result = KvmBridgeProvider().check({}, {**PROPS, **change})
    assert result.failures == []
    return result.inputs


def test_parse_observed_from_captured_output():
    snap = kb.parse_observed(IP_ADDR + "\n#---\n" + IP_ROUTE)
    assert snap["links"]["br0"]["addrs"] == ["10.20.10.31/24"]
    assert snap["links"]["eth0"] == {"mac": "72:4a:2a:ff:63:a9", "master": "br0", "addrs": []}
    assert kb._gateway_on(snap, "br0") == "10.20.10.2"


def test_previous_and_wanted_move_the_nic_addressing_to_the_bridge():
    snap = kb.parse_observed(
        IP_ADDR.replace('"master":"br0",', "").replace(
            '"scope":"link"',
            '"scope":"link"},{"family":"inet","local":"10.20.10.31",'
            '"prefixlen":24,"scope":"global"',
        )
        + "#---"
        + IP_ROUTE.replace("br0", "eth0")
    )
    props = checked()
    previous = kb._previous(
        props, {**snap, "links": {k: v for k, v in snap["links"].items() if k != "br0"}}
    )
    assert previous["addresses"] == {"eth0": ["10.20.10.31/24"]}
    wanted = kb._wanted(props, previous)
    assert wanted == {
        "addresses": ["10.20.10.31/24"],
        "gateway": "10.20.10.2",
        "mac": "72:4a:2a:ff:63:a9",
    }
    assert kb._wanted(checked(addresses=["10.9.9.9/24"], gateway="10.9.9.1"), previous) == {
        "addresses": ["10.9.9.9/24"],
        "gateway": "10.9.9.1",
        "mac": "72:4a:2a:ff:63:a9",
    }


@pytest.mark.parametrize(
    "change, replaces",
    [
        ({}, None),
        ({"addresses": ["10.20.10.40/24"]}, []),
        ({"gateway": "10.20.10.1"}, []),
        ({"interfaces": ["eth0", "eth1"]}, []),
        ({"nameservers": ["10.20.10.11"]}, []),
        ({"name": "br1"}, ["name"]),
        ({"node": "node2"}, ["node"]),
    ],
)
def test_diff_table(change, replaces):
    result = KvmBridgeProvider().diff("node1/br0", {**checked(), "mac": "x"}, checked(**change))
    if replaces is None:
        assert not result.changes
    else:
        assert result.changes and result.replaces == replaces


def test_scripts_quote_every_value():
    evil = {**checked(), "name": "br0; reboot", "interfaces": ["eth0 && halt"]}
    script = bs.apply_script(evil, {"addresses": ["10.0.0.1/24"], "gateway": None, "mac": None})
    assert "'br0; reboot'" in script and "'eth0 && halt'" in script
    restore = bs.restore_script(evil, {"addresses": {"eth0 && halt": ["10.0.0.1/24"]}})
    assert "dev 'eth0 && halt'" in restore


def test_guard_rolls_back_unless_confirmed():
    text = bs.guard_script(30, "br0")
    assert "mkdir /run/cephkvm/br0.decided 2>/dev/null || exit 0" in text
    assert text.index("br0.decided ] && exit 0") < text.index("sh /run/cephkvm/br0.rollback")


needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"),
    reason="needs root for a throwaway network namespace",
)


@needs_netns
def test_apply_then_restore_scripts_in_a_real_namespace():
    """The iproute2 scripts against a NIC in a private namespace: the bridge takes its
    MAC and address, and restore gives them back."""
    props = checked(interfaces=["dummy0"])
    # A veth pair (this kernel has no dummy driver) stands for the node's NIC.
    setup = (
        "ip link add dummy0 type veth peer name peer0 && ip link set peer0 up && "
        "ip link set dummy0 up && "
        "ip addr add 192.0.2.10/24 dev dummy0"
    )
    wanted = {"addresses": ["192.0.2.10/24"], "gateway": "192.0.2.1", "mac": None}
    previous = {
        "addresses": {"dummy0": ["192.0.2.10/24"]},
        "routes": [{"via": "192.0.2.1", "dev": "dummy0"}],
    }
    script = (
        f"set -e; {setup}; ip route add default via 192.0.2.1 dev dummy0\n"
        + bs.apply_script(props, wanted).replace("set -e\n", "")
        + "echo BRIDGED; ip -o addr show dev br0 scope global; ip route show default; "
        "ip -o link show dev dummy0\n"
        + bs.restore_script(props, previous)
        + "echo RESTORED; ip -o addr show dev dummy0 scope global; ip route show default;"
        " ip link show br0 2>&1 | head -1\n"
    )
    out = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    bridged, restored = out.stdout.split("RESTORED")
    assert "br0" in bridged and "192.0.2.10/24" in bridged
    assert "default via 192.0.2.1 dev br0" in bridged
    assert "192.0.2.10/24" in restored and "default via 192.0.2.1 dev dummy0" in restored
    assert "does not exist" in restored


@pytest.mark.skipif(not shutil.which("netplan"), reason="netplan is not installed")
def test_netplan_doc_is_valid_for_netplan_generate(tmp_path):
    props = checked(
        interfaces=["ens33"],
        nameservers=["10.20.10.11", "10.20.10.12"],
        search=["intranet.mycooldomain.com"],
    )
    doc = bs.netplan_doc(
        props,
        {"addresses": ["10.20.10.31/24"], "gateway": "10.20.10.2", "mac": "52:54:00:00:00:01"},
    )
    (tmp_path / "etc" / "netplan").mkdir(parents=True)
    (tmp_path / "etc" / "netplan" / "60-cephkvm-br0.yaml").write_text(yaml.safe_dump(doc))
    os.chmod(tmp_path / "etc" / "netplan" / "60-cephkvm-br0.yaml", 0o600)
    out = subprocess.run(
        ["netplan", "generate", "--root-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    bridge = doc["network"]["bridges"]["br0"]
    assert bridge["routes"] == [{"to": "default", "via": "10.20.10.2"}]
    assert bridge["nameservers"]["search"] == ["intranet.mycooldomain.com"]
    # and an error is reported with its place, as the provider relays it
    (tmp_path / "etc" / "netplan" / "60-cephkvm-br0.yaml").write_text(
        yaml.safe_dump(doc).replace("interfaces", "interfacez")
    )
    bad = subprocess.run(
        ["netplan", "generate", "--root-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0 and "interfacez" in bad.stderr


def test_network_xml_is_bridge_mode():
    xml = kb.network_xml(checked())
    assert "<forward mode='bridge'/>" in xml and '<bridge name="br0"/>' in xml


def test_a_stopped_libvirt_network_found_by_refresh_is_a_change():
    old = {**checked(), "network_active": False}
    assert KvmBridgeProvider().diff("node1/br0", old, checked()).changes
    assert (
        not KvmBridgeProvider()
        .diff("node1/br0", {**old, "network_active": True}, checked())
        .changes
    )


def test_ceph_unsettled_from_captured_health():
    from providers import ceph_facts

    ok = '{"status":"HEALTH_WARN","checks":{"MON_DISK_LOW":{"severity":"HEALTH_WARN"}}}'
    assert ceph_facts.unsettled(ok) == []
    blip = (
        '{"status":"HEALTH_WARN","checks":{"MON_DOWN":{"severity":"HEALTH_WARN"},'
        '"PG_DEGRADED":{"severity":"HEALTH_WARN"}}}'
    )
    assert ceph_facts.unsettled(blip) == ["MON_DOWN", "PG_DEGRADED"]
    assert ceph_facts.unsettled(
        '{"status":"HEALTH_ERR","checks":{"X":{"severity":"HEALTH_ERR"}}}'
    ) == ["X"]


def test_vlan_and_bond_topology():
    props = checked(
        interfaces=["ens33", "ens34"], vlan=10, bond={"name": "bond0", "mode": "active-backup"}
    )
    assert bs.ports(props) == ["bond0.10"]
    script = bs.apply_script(props, {"addresses": ["10.0.0.1/24"], "gateway": None, "mac": None})
    assert "ip link add name bond0 type bond mode active-backup" in script
    assert "ip link set dev ens34 master bond0" in script
    assert "ip link add link bond0 name bond0.10 type vlan id 10" in script
    assert "ip link set dev bond0.10 master br0 up" in script
    restore = bs.restore_script(props, {"addresses": {"ens33": ["10.0.0.1/24"]}})
    assert "ip link del dev bond0.10" in restore and "ip link del dev bond0" in restore
    assert bs.ports(checked(interfaces=["ens33"], vlan=20)) == ["ens33.20"]
    failures = (
        KvmBridgeProvider()
        .check({}, {**PROPS, "vlan": 5000, "bond": {"name": "b", "mode": "fast"}})
        .failures
    )
    assert sorted(f.property for f in failures) == ["bond.mode", "vlan"]


@pytest.mark.skipif(not shutil.which("netplan"), reason="netplan is not installed")
def test_netplan_accepts_the_vlan_and_bond_doc(tmp_path):
    props = checked(interfaces=["ens33", "ens34"], vlan=10, bond={"name": "bond0"})
    doc = bs.netplan_doc(props, {"addresses": ["10.20.10.31/24"], "gateway": None, "mac": None})
    (tmp_path / "etc" / "netplan").mkdir(parents=True)
    path = tmp_path / "etc" / "netplan" / "60-cephkvm-br0.yaml"
    path.write_text(yaml.safe_dump(doc))
    os.chmod(path, 0o600)
    out = subprocess.run(
        ["netplan", "generate", "--root-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert doc["network"]["bridges"]["br0"]["interfaces"] == ["bond0.10"]


@needs_netns
def test_vlan_script_in_a_real_namespace():
    props = checked(interfaces=["nic0"], vlan=10)
    setup = (
        "ip link add nic0 type veth peer name peer0 && ip link set peer0 up && "
        "ip link set nic0 up && ip addr add 192.0.2.10/24 dev nic0"
    )
    script = (
        f"set -e; {setup}\n"
        + bs.apply_script(
            props, {"addresses": ["192.0.2.10/24"], "gateway": None, "mac": None}
        ).replace("set -e\n", "")
        + "echo BRIDGED; ip -o link show master br0; ip -o addr show dev br0\n"
        + bs.restore_script(props, {"addresses": {"nic0": ["192.0.2.10/24"]}})
        + "echo RESTORED; ip -o addr show dev nic0 scope global; ip -o link\n"
    )
    out = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=30
    )
    if "Unknown device type" in out.stderr:
        pytest.skip("this kernel has no 8021q module")
    assert out.returncode == 0, out.stderr
    bridged, restored = out.stdout.split("RESTORED")
    assert "nic0.10@nic0" in bridged and "192.0.2.10/24" in bridged
    assert "192.0.2.10/24" in restored and "nic0.10" not in restored and "br0" not in restored


class NetplanHost(FakeNode):
    """A systemd host with netplan, as KvmBridge sees it over SSH: ens33 not bridged yet,
    no Ceph config, and the files it was given. The guard's apply is taken as done (rc 0),
    the way a real node reports."""

    HANDLERS = Handlers(CONTENT_WRITES)

    def __init__(self):
        super().__init__("osd1")
        self.files: dict[str, str] = {}


NETPLAN_HOST = NetplanHost.HANDLERS


@NETPLAN_HOST.script(kb.OBSERVE_SCRIPT)
def _addresses_and_routes(_host, _command):
    out = (
        IP_ADDR.replace('"master":"br0",', "")
        .replace(
            '"scope":"link"',
            '"scope":"link"},{"family":"inet","local":"10.20.10.31",'
            '"prefixlen":24,"scope":"global"',
        )
        .replace("eth0", "ens33")
    )
    out = json.dumps([i for i in json.loads(out) if i["ifname"] != "br0"])
    return out + "#---" + '[{"dst":"default","gateway":"10.20.10.2","dev":"ens33"}]', 0


@NETPLAN_HOST.script("command -v netplan")
def _netplan_installed(_host, _command):
    return "/usr/sbin/netplan\n", 0


@NETPLAN_HOST.program("test")
def _systemd_runs(_host, command):
    return ("", 0) if command.argv[1:] == ("-d", "/run/systemd/system") else None


@NETPLAN_HOST.program("find")
def _no_ceph_conf(_host, _command):
    return "", 0


@NETPLAN_HOST.program("mktemp")
def _scratch_root(_host, _command):
    return "/tmp/np\n", 0


@NETPLAN_HOST.script("/etc/netplan/60-cephkvm-br0.yaml ] && cp ")
def _keep_previous_netplan(_host, _command):
    return "", 0


@NETPLAN_HOST.script("cat /run/cephkvm/br0.rc")
def _guard_applied(_host, _command):
    return "0\n", 0


@NETPLAN_HOST.program("mkdir", "rm", "netplan", "setsid")
def _done(_host, _command):
    return "", 0


def test_netplan_mode_stages_validates_and_applies_with_netplan_try_semantics(monkeypatch):
    host = NetplanHost()
    monkeypatch.setattr(kb.base, "session", lambda props: host.session())
    answered = []
    monkeypatch.setattr(kb, "_sshd_answers", lambda host: answered.append(host.name) or True)
    conn = libvirt.open("test:///default")

    @contextlib.contextmanager
    def fake_libvirt(_node):
        yield conn

    monkeypatch.setattr(kb.libvirt_conn, "connect", fake_libvirt)
    props = checked(
        node="osd1",
        interfaces=["ens33"],
        nameservers=["10.20.10.11"],
        search=["intranet.mycooldomain.com"],
    )
    try:
        outs = KvmBridgeProvider().create(props).outs
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            net = conn.networkLookupByName("br0")
            net.destroy()
            net.undefine()
    assert outs["applied_mode"] == "netplan"
    assert outs["effective"] == {
        "addresses": ["10.20.10.31/24"],
        "gateway": "10.20.10.2",
        "mac": "72:4a:2a:ff:63:a9",
    }
    assert "netplan generate --root-dir /tmp/np" in host.log.lines
    staged = yaml.safe_load(host.files["/run/cephkvm/br0.netplan"])
    bridge = staged["network"]["bridges"]["br0"]
    assert bridge["addresses"] == ["10.20.10.31/24"] and bridge["interfaces"] == ["ens33"]
    assert bridge["nameservers"]["search"] == ["intranet.mycooldomain.com"]
    apply = host.files["/run/cephkvm/br0.apply"]
    assert "cp /run/cephkvm/br0.netplan /etc/netplan/60-cephkvm-br0.yaml" in apply
    assert apply.rstrip().endswith("netplan apply")
    assert "netplan apply" in host.files["/run/cephkvm/br0.rollback"]
    assert "setsid -f sh /run/cephkvm/br0.guard" in host.log.lines
    assert "mkdir /run/cephkvm/br0.decided" in host.log.lines, "confirmed"
    assert len(answered) >= 2, "each ask came after a new connection got sshd's banner"
    assert not [line for line in host.log.lines if line.startswith("ip ")], "netplan owns the NICs"


class TwoClusterNode(FakeNode):
    """A node holding the configs of two healthy clusters."""

    HANDLERS = Handlers()


@TwoClusterNode.HANDLERS.program("find")
def _two_configs(_node, _command):
    """Two clusters it can ask, and a third it holds only the config of (a client)."""
    return (
        "/etc/ceph/prod.conf\n/etc/ceph/ceph.conf\n/etc/ceph/ceph.client.admin.keyring\n"
        "/etc/ceph/prod.client.admin.keyring\n/etc/ceph/lab.conf\n"
    ), 0


@TwoClusterNode.HANDLERS.program("ceph")
def _healthy(_node, _command):
    return '{"status":"HEALTH_OK","checks":{}}', 0


def test_the_ceph_wait_asks_every_cluster_the_node_holds_a_config_of():
    """Not only one named `ceph`: the health of each cluster it holds the config and admin
    keyring of; one it is only a client of (no admin key) cannot be asked: not waited on."""
    node = TwoClusterNode("node1")
    kb._wait_ceph_settled(node.session(), {"node": "node1", "ceph_timeout": 5})
    clusters = [c.argv[c.argv.index("--cluster") + 1] for c in node.log if c.argv[0] == "ceph"]
    assert clusters == ["ceph", "prod"]


def test_a_failing_ip_fails_the_read_instead_of_reading_no_links(tmp_path):
    """No links read would be the bridge gone: refresh would drop it from the state."""
    import subprocess

    fake = tmp_path / "ip"
    fake.write_text("#!/bin/sh\necho 'Cannot open netlink socket' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    got = subprocess.run(["sh", "-c", kb.OBSERVE_SCRIPT], env=env, capture_output=True, text=True)
    assert got.returncode != 0 and "#---" not in got.stdout


@pytest.mark.parametrize("greeting, answers", [(b"SSH-2.0-OpenSSH_9.2\r\n", True), (b"", False)])
def test_the_confirmation_needs_sshds_banner_on_a_new_connection(greeting, answers):
    import socket
    import threading

    from providers.transport import Host

    server = socket.create_server(("127.0.0.1", 0))

    def greet():
        conn, _ = server.accept()
        conn.sendall(greeting)
        conn.close()

    threading.Thread(target=greet, daemon=True).start()
    host = Host(name="node1", address="127.0.0.1", port=server.getsockname()[1], user="root")
    try:
        assert kb._sshd_answers(host) is answers
    finally:
        server.close()
    assert kb._sshd_answers(host) is False  # nothing listens any more


def test_a_node_the_change_cut_off_is_not_asked_over_its_connection(monkeypatch):
    """The transport would wait out, and then refuse for a while, a node that does not
    answer: the guard's rollback would find it refused."""
    node = FakeNode("node1")
    monkeypatch.setattr(kb, "_sshd_answers", lambda host: False)
    assert kb._ask(node.session(), ["cat", "/run/cephkvm/br0.rc"]) is None
    assert node.log.lines == []
