"""CloudVM against a recording fake node (files) and libvirt's own test:///default driver
(domains)."""

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from unittest import mock

import libvirt
import pytest
import yaml

from providers import (
    base,
    guest_agent,
    libvirt_conn,
    migration_access,
    passwords,
    vm_change,
    vm_migrate,
    vm_ready,
    vm_storage,
)
from providers import libvirt_domain as dx
from providers.cloud_vm import CloudVMProvider
from providers.migration_access import PEERS_PATH
from providers.transport import Host
from tests.unit.fakes import CONTENT_WRITES, Crash, FakeNode, Handlers
from tests.unit.test_config import KEY

pytestmark = pytest.mark.unit

CONN = {"name": "node1", "address": "192.0.2.1", "host_key": KEY}
PASSWORD = "hunter2-not-really"
IMAGE_SHA = __import__("hashlib").sha256(b"image").hexdigest()
TEMPLATE = f"/mnt/cephfs/templates/debian-{IMAGE_SHA[:16]}.qcow2"  # named by content
PROPS = {
    "name": "vm-unit",
    "owner": "cephkvm/unit",
    "node": "node1",
    "connection": CONN,
    "storage": "/mnt/cephfs",
    "template": {"source": "/images/debian.qcow2"},
    "disk_gib": 4,
    "memory_mib": 256,
    "max_memory_mib": 512,
    "vcpus": 1,
    "max_vcpus": 2,
    "virt_type": "qemu",
    "nics": [{"bridge": "br0"}],
    "ready_timeout": 5,
    "shutdown_timeout": 0,
    "cloud_init": {
        "hostname": "vm-unit",
        "ssh_authorized_keys": ["ssh-ed25519 AAAAK op"],
        "user_data": {"runcmd": ["echo extra"], "timezone": "UTC"},
    },
    "password": PASSWORD,
}


class VmHost(FakeNode):
    """A KVM node with its CephFS storage: the set of files that exist there (a directory
    is a path ending in /), answering the commands CloudVM sends."""

    HANDLERS = Handlers(CONTENT_WRITES)

    def __init__(self):
        super().__init__("node1")
        self.files: dict[str, str] = {"/images/debian.qcow2": "image"}
        self.fstype = "fuse.ceph-fuse"

    def for_props(self, props):
        """A session to this fake (same files and journal) as the node props describe,
        with its key."""
        return self.session(
            Host(**{k: v for k, v in props["connection"].items() if k in base.CONNECTION_FIELDS}),
            props.get("ssh_private_key"),
        )

    def exists(self, path: str) -> bool:
        return path in self.files or any(k.startswith(path + "/") for k in self.files)


VM_HOST = VmHost.HANDLERS


@VM_HOST.program("test")
def _test(node, command):
    paths = [a for a in command.argv[1:] if a.startswith("/")]
    return "", 0 if all(node.exists(p) for p in paths) else 1


@VM_HOST.program("cat")
def _cat(node, command):
    path = command.argv[-1]
    return (node.files[path], 0) if path in node.files else ("", 1)


@VM_HOST.program("mkdir")
def _mkdir(node, command):
    for p in command.argv[2:]:
        node.files[p + "/"] = "dir"
    return "", 0


@VM_HOST.program("qemu-img")
def _qemu_img(node, command):
    argv, f = command.argv, node.files
    if argv[1] == "convert":
        f[argv[-1]] = "qcow2"
    elif argv[1] == "create":
        f[argv[-2]] = "qcow2"
    elif argv[1] == "resize":
        pass
    elif argv[1:3] == ("info", "-U"):
        info = {
            "format": "qcow2",
            "virtual-size": 4 << 30,
            "full-backing-filename": TEMPLATE,
            **({"backing-filename": "/etc/shadow"} if "backed" in f[argv[-1]] else {}),
        }
        return json.dumps(info), 0
    else:
        return None
    return "", 0


@VM_HOST.program("mv")
def _mv(node, command):
    node.files[command.argv[-1]] = node.files.pop(command.argv[-2])
    return "", 0


@VM_HOST.program("rm")
def _rm(node, command):
    for p in command.argv:
        for k in [k for k in node.files if k == p or k.startswith(p + "/")]:
            del node.files[k]
    return "", 0


@VM_HOST.script('rm -f -- "$1".*.part && mktemp ')
def _fresh_part(node, command):
    """vm_storage._temp: what a killed run left under the prefix goes, then a new name."""
    prefix = command.argv[-1]
    for k in [k for k in node.files if k.startswith(prefix + ".") and k.endswith(".part")]:
        del node.files[k]
    path = f"{prefix}.{len(node.files):06d}.part"
    node.files[path] = ""
    return path + "\n", 0


@VM_HOST.program("curl")
def _download(node, command):
    node.files[command.argv[command.argv.index("-o") + 1]] = "downloaded image"
    return "", 0


@VM_HOST.script(vm_storage.SEED_SCRIPT)
def _seed_iso(node, command):
    files = seed_files(command)
    node.files[command.argv[-1]] = "iso:" + files["user-data"] + "\n---\n" + files["meta-data"]
    return "", 0


def seed_files(command) -> dict:
    """The files vm_storage.write_seed sent, from the tar on the command's stdin."""
    with tarfile.open(fileobj=io.BytesIO(command.stdin.encode())) as archive:
        return {m.name: archive.extractfile(m).read().decode() for m in archive.getmembers()}


@VM_HOST.program("chmod")
def _chmod(_node, _command):
    return "", 0


@VM_HOST.program("findmnt")
def _storage_fstype(node, _command):
    return node.fstype + "\n", 0


@VM_HOST.script("openssl dgst -sha256 -r")
def _sha256(node, command):
    path = command.argv[-1]
    return f"{hashlib.sha256(node.files[path].encode()).hexdigest()} *{path}\n", 0


@VM_HOST.program("stat")
def _identity(node, command):
    """vm_storage's look at an image's identity: another content is another inode here."""
    path = command.argv[-1]
    if path not in node.files:
        return f"stat: cannot statx '{path}': No such file or directory", 1
    inode = int(hashlib.sha256(node.files[path].encode()).hexdigest()[:8], 16)
    return f"2049 {inode} {len(node.files[path])} 1.0 1.0\n", 0


class FakeGuest:
    """The guest agent of a guest that boots from the seed on the fake node: cloud-init's
    instance-id comes from the seed's meta-data; `booted_after` probes until it is done."""

    def __init__(self, node):
        self.node, self.agent, self.errors, self.system = node, True, [], "running"
        self.booted_after, self.probes, self.handles = 0, 0, {}

    def __call__(self, _dom, execute, **args):
        if not self.agent:
            raise guest_agent.NoAgent(
                "Guest agent is not responding: QEMU guest agent is not connected"
            )
        if execute == "guest-ping":
            self.probes += 1
            return {}
        if execute == "guest-file-open":
            text = self.file(args["path"])
            if text is None:
                raise guest_agent.NoAgent("failed to open file: No such file or directory")
            self.handles[len(self.handles) + 1] = text
            return len(self.handles)
        if execute == "guest-file-read":
            return {"buf-b64": base64.b64encode(self.handles[args["handle"]].encode()).decode()}
        if execute == "guest-exec":
            self.exec_polls = 0
            return {"pid": 42}
        if execute == "guest-exec-status":  # a process takes a few polls to exit
            self.exec_polls += 1
            if self.exec_polls < 3:
                return {"exited": False}
            return {"exited": True, "out-data": base64.b64encode(self.system.encode()).decode()}
        return {}

    def file(self, path):
        booted = self.probes > self.booted_after
        seed = self.node.files.get(f"/mnt/cephfs/config/{PROPS['name']}-seed.iso", "")
        if path == guest_agent.INSTANCE_ID and booted and "---" in seed:
            return yaml.safe_load(seed.split("\n---\n", 1)[1])["instance-id"] + "\n"
        if path == guest_agent.RESULT and booted:
            return json.dumps({"v1": {"datasource": "NoCloud", "errors": self.errors}})
        return None


@pytest.fixture
def node(monkeypatch):
    fake = VmHost()
    monkeypatch.setattr(base, "session", lambda props: fake.session())
    fake.guest = FakeGuest(fake)
    monkeypatch.setattr(guest_agent, "command", fake.guest)
    monkeypatch.setattr(vm_ready, "POLL", 0.01)
    monkeypatch.setattr(guest_agent, "EXEC_POLL", 0)
    conn = libvirt.open("test:///default")

    @contextlib.contextmanager
    def fake_libvirt(_node):
        yield conn

    monkeypatch.setattr(libvirt_conn, "connect", fake_libvirt)
    fake.conn = conn
    yield fake
    with contextlib.suppress(libvirt.libvirtError):
        dom = conn.lookupByName(PROPS["name"])
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def checked(props=None, olds=None):
    result = CloudVMProvider().check(olds or {}, dict(props or PROPS))
    assert result.failures == []
    return result.inputs


def test_create_imports_template_once_makes_overlay_seed_and_running_domain(node):
    outs = CloudVMProvider().create(checked()).outs
    tpl = TEMPLATE
    assert node.files[tpl] == "qcow2" and outs["template_path"] == tpl
    assert any(c.startswith("qemu-img convert -f qcow2 -O qcow2") for c in node.changes)
    assert "/mnt/cephfs/virtualmachines/vm-unit.qcow2" in node.files
    create = next(c for c in node.changes if c.startswith("qemu-img create"))
    assert f"-F qcow2 -b {tpl}" in create and create.endswith(" 4G")
    assert node.files["/mnt/cephfs/config/vm-unit-seed.iso"].startswith("iso:#cloud-config")
    dom = node.conn.lookupByName("vm-unit")
    assert dom.isActive() and dom.autostart()
    parsed = dx.parse_domain(dom.XMLDesc(0))
    assert parsed["memory_mib"] == 256 and parsed["max_memory_mib"] == 512
    assert parsed["virt_type"] == "qemu"
    assert parsed["nics"] == [{"mac": dx.stable_mac("vm-unit", 0), "bridge": "br0"}]
    assert outs["state"] == "running" and outs["uuid"] == dom.UUIDString()
    assert outs["macs"] == [dx.stable_mac("vm-unit", 0)]
    assert outs["instance_id"].startswith("vm-unit-1-")


def test_password_never_appears_in_commands(node):
    CloudVMProvider().create(checked())
    assert not [line for line in node.log.lines if PASSWORD in line]
    seed = next(c for c in node.log if c.script == vm_storage.SEED_SCRIPT)
    user_data = seed_files(seed)["user-data"]
    assert PASSWORD not in user_data, "the seed holds the password's hash only"
    doc = yaml.safe_load(user_data)
    assert crypt_matches(PASSWORD, doc["password"])


def crypt_matches(password: str, digest: str) -> bool:
    salt = digest.split("$")[2]
    return passwords.hashed(password, salt) == digest


def test_password_hash_is_the_systems_sha512_crypt():
    crypt = pytest.importorskip("crypt")  # gone in Python 3.13
    for pw in ("hunter2", "x" * 100, "pässwörd"):
        digest = passwords.hashed(pw)
        assert crypt.crypt(pw, digest) == digest
    already = crypt.crypt("pw", crypt.mksalt(crypt.METHOD_SHA512))
    assert passwords.hashed(already) == already


def test_cloud_config_from_structured_inputs_merges_user_data():
    doc = vm_storage.cloud_config(PROPS)
    assert doc["hostname"] == "vm-unit" and doc["password"].startswith("$6$")
    assert doc["chpasswd"] == {"expire": False} and doc["ssh_pwauth"] is True
    assert doc["runcmd"] == ["echo extra"] and doc["timezone"] == "UTC"


@pytest.mark.skipif(
    not (shutil.which("cloud-localds") and shutil.which("isoinfo")),
    reason="needs cloud-image-utils and genisoimage",
)
@pytest.mark.parametrize("network", [True, False])
def test_the_seed_script_makes_a_cidata_iso_from_the_tar(tmp_path, network):
    """SEED_SCRIPT as a node runs it: the real tar, cloud-localds and sh."""
    files = {"user-data": "#cloud-config\nhostname: a\n", "meta-data": "instance-id: a-1\n"}
    if network:
        files["network-config"] = "version: 2\nethernets: {eth0: {dhcp4: true}}\n"
    seed = tmp_path / "a-seed.iso"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    argv = ["sh", "-c", vm_storage.SEED_SCRIPT, "sh", str(seed)]
    subprocess.run(argv, input=vm_storage.tar(files), check=True, env=env)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-seed.iso"], "temp files removed"
    assert stat.S_IMODE(seed.stat().st_mode) == 0o600
    label = subprocess.run(["isoinfo", "-d", "-i", str(seed)], capture_output=True, text=True)
    assert "Volume id: cidata" in label.stdout
    for name, text in files.items():
        read = ["isoinfo", "-R", "-i", str(seed), "-x", f"/{name}"]
        assert subprocess.run(read, capture_output=True, text=True).stdout == text


@pytest.mark.parametrize("step", range(1, 8))  # every change the create makes
def test_crash_at_step_n_then_rerun_converges(node, step):
    node.log.crash_at = step
    with pytest.raises(Crash):
        CloudVMProvider().create(checked())
    CloudVMProvider().create(checked())
    assert node.conn.lookupByName("vm-unit").isActive()
    assert node.files[TEMPLATE] == "qcow2"
    assert not [k for k in node.files if k.endswith(".part")], "a killed run's part is gone"
    done = next(
        i
        for i, c in enumerate(node.changes)
        if c.startswith("mv -f") and c.endswith(" " + TEMPLATE)
    )
    assert not [c for c in node.changes[done:] if c.startswith("qemu-img convert")], (
        "a template in place is never imported again"
    )


def test_second_create_of_existing_vm_defines_nothing_new(node):
    CloudVMProvider().create(checked())
    uuid = node.conn.lookupByName("vm-unit").UUIDString()
    CloudVMProvider().create(checked())
    assert node.conn.lookupByName("vm-unit").UUIDString() == uuid
    assert len([c for c in node.changes if c.startswith("qemu-img create")]) == 1


@pytest.mark.parametrize(
    "change, replaces",
    [
        ({}, None),
        ({"node": "node2", "connection": {**CONN, "name": "node2"}}, []),
        ({"memory_mib": 384}, []),
        ({"vcpus": 2}, []),
        ({"disk_gib": 8}, []),
        ({"cloud_init": {"hostname": "other"}}, []),
        ({"cloud_init": {"hostname": "other"}, "on_cloud_init_change": "replace"}, ["cloud_init"]),
        ({"name": "vm-other"}, ["name"]),
        ({"template": {"source": "/images/other.qcow2"}}, ["template"]),
    ],
)
def test_diff_table(change, replaces):
    old = {**checked(), "uuid": "u", "state": "running"}
    new = checked({**PROPS, **change})
    result = CloudVMProvider().diff("vm-unit", old, new)
    if replaces is None:
        assert not result.changes
    else:
        assert result.changes and result.replaces == replaces


def test_check_names_fields_and_fixes():
    bad = {
        **PROPS,
        "nics": [{"bridge": "br0", "mac": "zz"}],
        "memory_mib": 32,
        "max_vcpus": 0,
        "cloud_init": {"hostnme": "x"},
        "virt_type": "xen",
    }
    reasons = {f.property: f.reason for f in CloudVMProvider().check({}, bad).failures}
    assert {"nics[0].mac", "memory_mib", "max_vcpus", "cloud_init.hostnme", "virt_type"} <= set(
        reasons
    )
    shrink = CloudVMProvider().check(checked(), {**PROPS, "disk_gib": 2}).failures
    assert [f.property for f in shrink] == ["disk_gib"] and "only grow" in shrink[0].reason


def test_memory_and_vcpus_change_live_up_to_the_maximum(node):
    provider = CloudVMProvider()
    outs = provider.create(checked()).outs
    new = checked({**PROPS, "memory_mib": 384, "vcpus": 2})
    provider.update("vm-unit", outs, new)
    dom = node.conn.lookupByName("vm-unit")
    live = dx.parse_domain(dom.XMLDesc(0))
    assert live["memory_mib"] == 384 and live["vcpus"] == 2
    assert dom.isActive()


def test_change_needing_a_restart_fails_when_told_to(node):
    provider = CloudVMProvider()
    outs = provider.create(checked()).outs
    new = checked({**PROPS, "max_memory_mib": 1024, "on_restart_needed": "fail"})
    with pytest.raises(RuntimeError, match="needs the VM restarted"):
        provider.update("vm-unit", outs, new)


def test_change_needing_a_restart_redefines_and_starts(node):
    provider = CloudVMProvider()
    outs = provider.create(checked()).outs
    uuid = outs["uuid"]
    provider.update("vm-unit", outs, checked({**PROPS, "max_memory_mib": 1024}))
    dom = node.conn.lookupByName("vm-unit")
    assert dom.UUIDString() == uuid and dom.isActive()
    assert dx.parse_domain(dom.XMLDesc(0))["max_memory_mib"] == 1024


def test_read_reports_drift_and_a_missing_domain(node):
    provider = CloudVMProvider()
    outs = provider.create(checked()).outs
    node.conn.lookupByName("vm-unit").setMemoryFlags(300 * 1024, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    read = provider.read("vm-unit", outs)
    assert read.outs["memory_mib"] == 300
    assert provider.diff("vm-unit", read.outs, checked()).changes
    dom = node.conn.lookupByName("vm-unit")
    dom.destroy()
    dom.undefine()
    assert provider.read("vm-unit", outs).id == ""


def test_delete_with_opt_in_removes_domain_overlay_and_seed_but_not_the_template(node):
    provider = CloudVMProvider()
    outs = provider.create(checked({**PROPS, "keep_disk": False})).outs
    provider.delete("vm-unit", outs)
    with pytest.raises(libvirt.libvirtError):
        node.conn.lookupByName("vm-unit")
    assert outs["disk_path"] not in node.files and outs["seed_path"] not in node.files
    assert outs["template_path"] in node.files


def test_delete_keeps_the_disk_by_default(node):
    provider = CloudVMProvider()
    outs = provider.create(checked()).outs
    provider.delete("vm-unit", outs)
    with pytest.raises(libvirt.libvirtError):
        node.conn.lookupByName("vm-unit")
    assert outs["disk_path"] in node.files


def test_migration_is_peer_to_peer_with_unsafe_only_for_shared_storage(node, monkeypatch):
    dom = mock.Mock()
    dom.isActive.return_value = True
    dom.XMLDesc.return_value = (
        f"<domain><metadata><cephkvm:vm xmlns:cephkvm='{dx.OWNER_NS}'><cephkvm:owner>"
        "cephkvm/unit</cephkvm:owner></cephkvm:vm></metadata></domain>"
    )
    src, dst = mock.Mock(name="src"), mock.Mock(name="dst")
    conns = {"node1": src, "node2": dst}

    @contextlib.contextmanager
    def by_node(session):
        yield conns[session.name]

    monkeypatch.setattr(libvirt_conn, "connect", by_node)
    monkeypatch.setattr(base, "session", node.for_props)
    monkeypatch.setattr(libvirt_conn, "domain", lambda conn, name: dom if conn is src else None)

    def migrate(olds, news):  # to the call's node: news'
        vm_migrate.migrate(olds, news, base.session(news))

    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretbits\n"
    olds = {**checked(), "ssh_private_key": key, "migration_key": "/root/.ssh/m"}
    news = {
        **checked(
            {
                **PROPS,
                "node": "node2",
                "connection": {**CONN, "name": "node2", "address": "192.0.2.2"},
            }
        ),
        "ssh_private_key": key,
    }
    with pytest.raises(RuntimeError, match="migration key"):
        migrate(olds, news)  # no migration key on the nodes: refuse, say why
    assert not dom.migrateToURI3.called
    news["migration_key"] = "/root/.ssh/m"
    migrate(olds, news)
    uri, _params, flags = dom.migrateToURI3.call_args.args
    assert flags & libvirt.VIR_MIGRATE_LIVE and flags & libvirt.VIR_MIGRATE_UNSAFE
    assert flags & libvirt.VIR_MIGRATE_PEER2PEER
    assert flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE and flags & libvirt.VIR_MIGRATE_PERSIST_DEST
    assert not flags & libvirt.VIR_MIGRATE_AUTO_CONVERGE
    dom.migrateSetMaxDowntime.assert_called_with(300, 0)  # QEMU's default, not the last one
    # the node's own migration key: the controller's key never goes to a node
    assert uri.startswith("qemu+libssh://root@192.0.2.2/system?keyfile=/root/.ssh/m&")
    assert "known_hosts=/run/cephkvm/migrate-" in uri and "known_hosts_verify=normal" in uri
    assert f"192.0.2.2 {KEY}\n" in node.log.stdin, "the destination's pinned key"
    assert not [k for k in node.files if "/run/cephkvm/migrate-" in k], "credentials removed"
    assert not [line for line in node.log.lines if "secretbits" in line]
    assert not [data for data in node.log.stdin if "secretbits" in str(data)]
    node.fstype = "ext4"  # a node-local disk: refuse rather than lose it
    dom.migrateToURI3.reset_mock()
    with pytest.raises(RuntimeError, match="not CephFS"):
        migrate(olds, news)
    assert not dom.migrateToURI3.called
    migrate(olds, {**news, "shared_storage": True})  # the operator says it is shared
    assert dom.migrateToURI3.called
    assert dom.migrateToURI3.call_args.args[1] == {}  # as fast as the network: no limit
    migrate(olds, {**news, "shared_storage": True, "migration_bandwidth_mib": 200})
    assert dom.migrateToURI3.call_args.args[1] == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 200}
    tuned = {"migration_max_downtime_ms": 50, "migration_auto_converge": True}
    migrate(olds, {**news, "shared_storage": True, **tuned})
    dom.migrateSetMaxDowntime.assert_called_with(50, 0)
    assert dom.migrateToURI3.call_args.args[2] & libvirt.VIR_MIGRATE_AUTO_CONVERGE


def test_a_finished_migration_reports_what_the_destination_measured():
    class Dom:
        def __init__(self, stats):
            self.stats = stats

        def jobStats(self, flags):
            assert flags == libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED
            if self.stats is None:
                raise libvirt.libvirtError("no job")
            return self.stats

    stats = {"downtime": 42, "time_elapsed": 3100, "data_total": 300 << 20, "type": 3}
    assert vm_migrate.job_figures(Dom(stats)) == {
        "downtime_ms": 42,
        "total_ms": 3100,
        "data_mib": 300.0,
    }
    assert vm_migrate.job_figures(Dom(None)) == {}
    assert vm_migrate.job_figures(None) == {}


def test_a_migration_setting_is_a_change_of_the_state_alone(node):
    """A setting used by the next migration: preview says update, up touches no host."""
    olds = {**checked(), "uuid": "u", "state": "running"}
    news = checked({**PROPS, "migration_bandwidth_mib": 200})
    diff = CloudVMProvider().diff("vm-unit", olds, news)
    assert diff.changes and not diff.replaces
    before = len(node.log)
    outs = CloudVMProvider().update("vm-unit", olds, news).outs
    assert outs["migration_bandwidth_mib"] == 200 and outs["uuid"] == "u"
    assert len(node.log) == before, "no command on the node"


def test_domain_xml_tcg_cache_and_kvm_cpu():
    params = {
        **PROPS,
        "disk_path": "/d.qcow2",
        "seed_path": "/s.iso",
        "macs": dx.nic_macs("vm-unit", PROPS["nics"]),
    }
    tcg = dx.domain_xml(params)
    assert "<tb-cache unit='MiB'>128</tb-cache>" in tcg and "host-passthrough" not in tcg
    kvm = dx.domain_xml({**params, "virt_type": "kvm"})
    assert '<domain type="kvm">' in kvm and "host-passthrough" in kvm
    assert dx.stable_mac("a", 0) == dx.stable_mac("a", 0) != dx.stable_mac("a", 1)


def test_template_checksum_mismatch_refuses_the_import(node):
    props = checked({**PROPS, "template": {"source": "/images/debian.qcow2", "sha256": "cd" * 32}})
    with pytest.raises(RuntimeError, match="SHA-256"):
        CloudVMProvider().create(props)
    assert TEMPLATE not in node.files
    CloudVMProvider().create(
        checked({**PROPS, "template": {"source": "/images/debian.qcow2", "sha256": IMAGE_SHA}})
    )
    assert TEMPLATE in node.files


def test_an_image_is_hashed_once_per_node_and_run_until_it_changes(node):
    def create(name):
        props = checked({**PROPS, "name": name, "wait_for": "none"})
        return CloudVMProvider().create(props).outs["template_path"]

    def hashed():
        return len([c for c in node.log if "dgst -sha256" in c.script])

    assert create("vm-unit") == create("vm-two") == TEMPLATE
    assert hashed() == 1
    node.files["/images/debian.qcow2"] = "image, rewritten in place"
    assert create("vm-three") != TEMPLATE and hashed() == 2
    for name in ("vm-two", "vm-three"):
        node.conn.lookupByName(name).destroy()
        node.conn.lookupByName(name).undefine()


def test_two_images_of_one_file_name_are_two_templates(node):
    first = CloudVMProvider().create(checked()).outs["template_path"]
    node.files["/other/debian.qcow2"] = "another image"
    second = (
        CloudVMProvider()
        .create(
            checked(
                {
                    **PROPS,
                    "name": "vm-two",
                    "wait_for": "none",
                    "template": {"source": "/other/debian.qcow2"},
                }
            )
        )
        .outs
    )
    assert second["template_path"] != first and node.files[first] == "qcow2"
    node.conn.lookupByName("vm-two").destroy()
    node.conn.lookupByName("vm-two").undefine()


def test_an_image_that_refers_to_another_file_is_refused(node):
    node.files["/images/debian.qcow2"] = "backed image"
    with pytest.raises(RuntimeError, match="refers to another file.*/etc/shadow"):
        CloudVMProvider().create(checked())
    assert not [c for c in node.changes if c.startswith("qemu-img convert")]


def test_an_http_image_needs_its_checksum():
    result = CloudVMProvider().check({}, {**PROPS, "template": {"source": "http://x/a.img"}})
    assert [f.property for f in result.failures] == ["template.sha256"]
    ok = CloudVMProvider().check({}, {**PROPS, "template": {"source": "https://x/a.img"}})
    assert ok.failures == []


def test_a_downloaded_image_is_named_by_its_content_and_the_download_removed(node):
    outs = (
        CloudVMProvider()
        .create(checked({**PROPS, "template": {"source": "https://images.example/a.img"}}))
        .outs
    )
    sha = __import__("hashlib").sha256(b"downloaded image").hexdigest()
    assert outs["template_path"] == f"/mnt/cephfs/templates/a-{sha[:16]}.qcow2"
    assert not [k for k in node.files if ".download." in k]


def test_nics_are_attached_and_detached_by_mac():
    dom = mock.Mock()
    dom.isActive.return_value = True
    olds = checked()
    news = checked({**PROPS, "nics": [{"bridge": "br0"}, {"network": "default"}]})
    vm_change.update_nics(dom, olds, news)
    assert not dom.detachDeviceFlags.called
    xml, flags = dom.attachDeviceFlags.call_args.args
    assert dx.stable_mac("vm-unit", 1) in xml and 'network="default"' in xml
    assert flags == libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_AFFECT_LIVE
    dom.reset_mock()
    vm_change.update_nics(dom, news, olds)
    assert dx.stable_mac("vm-unit", 1) in dom.detachDeviceFlags.call_args.args[0]
    assert not dom.attachDeviceFlags.called


def test_read_and_delete_find_a_vm_moved_by_hand_to_a_peer(node, monkeypatch):
    provider = CloudVMProvider()
    peer = {**CONN, "name": "node2", "address": "192.0.2.2", "host_key": "ssh-ed25519 AAAAnode2"}
    props = {**PROPS, "connection": {**CONN, "key_file": "/etc/cephkvm/id_ed25519"}}
    outs = provider.create(checked(props)).outs
    # what node1's MigrationAccess keeps: every KVM node, itself too
    node.files[PEERS_PATH] = json.dumps([migration_access.peer(c) for c in (CONN, peer)])
    seen = []

    @contextlib.contextmanager
    def by_node(session):
        seen.append(session.name)
        if session.name == "node2":
            yield node.conn  # the domain is there now
        else:
            yield mock.Mock(lookupByName=mock.Mock(side_effect=libvirt.libvirtError("gone")))

    monkeypatch.setattr(libvirt_conn, "connect", by_node)
    monkeypatch.setattr(base, "session", node.for_props)
    monkeypatch.setattr(
        libvirt_conn,
        "domain",
        lambda conn, name: None if isinstance(conn, mock.Mock) else conn.lookupByName(name),
    )
    read = provider.read("vm-unit", outs).outs
    assert read["node"] == "node2" and read["host"] == "node2"
    assert read["connection"]["address"] == "192.0.2.2"
    assert read["connection"]["host_key"] == "ssh-ed25519 AAAAnode2", "pinned from the file"
    assert read["connection"]["key_file"] == "/etc/cephkvm/id_ed25519", "its own SSH key"
    assert provider.diff("vm-unit", read, checked(props)).changes
    provider.delete("vm-unit", outs)
    with pytest.raises(libvirt.libvirtError):
        node.conn.lookupByName("vm-unit")
    assert seen[0] == "node1", "its own node is asked first"


# --- ready means usable -----------------------------------------------------------------


def test_create_waits_until_cloud_init_has_finished_for_this_seed(node):
    node.guest.booted_after = 5  # the agent answers, cloud-init is still running
    outs = CloudVMProvider().create(checked()).outs
    assert node.guest.probes > 5, "create returned before cloud-init had finished"
    assert outs["ready"] is True and outs["cloud_init_errors"] == []


def test_create_waits_while_systemd_is_still_starting_units(node):
    node.guest.system = "starting"
    with pytest.raises(TimeoutError, match="systemd in the guest is 'starting'"):
        CloudVMProvider().create(checked({**PROPS, "ready_timeout": 0}))


def test_no_guest_agent_times_out_naming_the_setting(node):
    node.guest.agent = False
    with pytest.raises(TimeoutError) as err:
        CloudVMProvider().create(checked({**PROPS, "ready_timeout": 0}))
    assert "no guest agent answered" in str(err.value)
    assert "wait_for: address or none" in str(err.value)
    assert node.conn.lookupByName("vm-unit").isActive(), "the domain is left running"
    node.guest.agent = True
    assert CloudVMProvider().create(checked()).outs["ready"] is True, "a re-run converges"


def test_a_guest_running_another_instance_is_not_ready(node):
    CloudVMProvider().create(checked())
    node.files["/mnt/cephfs/config/vm-unit-seed.iso"] = "iso:\n---\ninstance-id: other-1\n"
    with pytest.raises(TimeoutError, match="runs instance other-1"):
        vm_ready.wait(
            node.conn.lookupByName("vm-unit"),
            {**checked(), "ready_timeout": 0},
            "vm-unit-1-00000000",
        )


def test_cloud_init_errors_are_reported_in_outputs(node):
    node.guest.errors = ["runcmd failed"]
    outs = CloudVMProvider().create(checked()).outs
    assert outs["ready"] is True and outs["cloud_init_errors"] == ["runcmd failed"]


def test_wait_for_none_asks_no_agent(node):
    node.guest.agent = False
    outs = CloudVMProvider().create(checked({**PROPS, "wait_for": "none"})).outs
    assert outs["ready"] is True and node.guest.probes == 0


def test_restart_update_waits_for_the_guest_again(node):
    olds = CloudVMProvider().create(checked()).outs
    node.guest.probes, node.guest.booted_after = 0, 3
    news = checked({**PROPS, "max_vcpus": 3})
    outs = CloudVMProvider().update("vm-unit", olds, news).outs
    assert node.guest.probes > 3 and outs["ready"] is True


def test_refresh_reports_a_guest_that_is_not_ready(node):
    olds = CloudVMProvider().create(checked()).outs
    node.guest.agent = False
    assert CloudVMProvider().read("vm-unit", olds).outs["ready"] is False


def test_wait_for_is_checked():
    result = CloudVMProvider().check({}, {**PROPS, "wait_for": "ssh"})
    assert [f.property for f in result.failures] == ["wait_for"]


# --- whose domain it is -----------------------------------------------------------------

FOREIGN = """<domain type='test'><name>vm-unit</name><memory>65536</memory>
<os><type>hvm</type></os></domain>"""


def test_a_domain_of_that_name_cephkvm_did_not_make_is_refused_and_left_alone(node):
    node.conn.defineXML(FOREIGN)
    with pytest.raises(RuntimeError, match="cephkvm did not make; it is left alone"):
        CloudVMProvider().create(checked())
    dom = node.conn.lookupByName("vm-unit")
    assert dx.owner(dom.XMLDesc(0)) is None and not dom.isActive()


def test_delete_and_read_leave_a_foreign_domain_and_keep_the_disk(node):
    outs = CloudVMProvider().create(checked({**PROPS, "keep_disk": False})).outs
    dom = node.conn.lookupByName("vm-unit")
    dom.destroy()
    dom.undefine()
    node.conn.defineXML(FOREIGN).create()
    assert CloudVMProvider().read("vm-unit", outs).id == ""
    CloudVMProvider().delete("vm-unit", outs)
    assert node.conn.lookupByName("vm-unit").isActive(), "not shut down"
    assert outs["disk_path"] in node.files, "the disk stays when our domain is not found"


def test_an_update_never_changes_a_domain_that_is_not_ours(node):
    """Ours replaced by hand with another of that name: resizing or redefining it would
    write our tag onto it and adopt it."""
    outs = CloudVMProvider().create(checked()).outs
    dom = node.conn.lookupByName("vm-unit")
    dom.destroy()
    dom.undefine()
    node.conn.defineXML(FOREIGN)
    with pytest.raises(RuntimeError, match="cephkvm did not make; it is left alone"):
        CloudVMProvider().update("vm-unit", outs, checked({**PROPS, "vcpus": 2}))
    assert dx.owner(node.conn.lookupByName("vm-unit").XMLDesc(0)) is None


def test_domains_carry_the_stacks_tag():
    xml = dx.domain_xml(
        {**PROPS, "disk_path": "/d", "seed_path": "/s", "macs": ["m"], "nics": [{"bridge": "br0"}]}
    )
    assert dx.owner(xml) == "cephkvm/unit"


@pytest.mark.parametrize(
    "setting",
    [
        {"keep_disk": False},
        {"shutdown_timeout": 5},
        {"ready_timeout": 60},
        {"wait_for": "address"},
        {"on_restart_needed": "fail"},
    ],
)
def test_a_setting_for_the_next_change_needs_no_host_work(node, setting):
    olds = {**checked(), "uuid": "u", "state": "running"}
    news = checked({**PROPS, **setting})
    assert CloudVMProvider().diff("vm-unit", olds, news).changes
    before = len(node.log)
    CloudVMProvider().update("vm-unit", olds, news)
    assert len(node.log) == before
