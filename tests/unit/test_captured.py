"""Parsers of host output against what the real commands print (tests/unit/captured/, on
Debian 12 with Ceph 16.2.15, libvirt 9.0, QEMU 7.2, util-linux 2.38, cloud-init 22.4).
Each test names the command that printed its sample."""

import base64
import json

import libvirt_qemu
import pytest

from providers import ceph_osd, cephfs_mount, facts, guest_agent, vm_storage
from providers import libvirt_domain as dx
from providers.errors import Failure
from tests.unit.fakes import FakeNode, Handlers, captured

pytestmark = pytest.mark.unit


class Replay(FakeNode):
    """A node that prints captured output: `outputs` maps the start of a command line to
    what the real command printed (and its exit code, 0 unless given)."""

    HANDLERS = Handlers()

    def __init__(self, outputs: dict):
        super().__init__("node1")
        self.outputs = outputs


@Replay.HANDLERS.script("")
@Replay.HANDLERS.program("cat", "ceph", "ceph-volume", "wipefs", "blkid", "test", "qemu-img")
def _replay(node, command):
    out = next((o for start, o in node.outputs.items() if command.line.startswith(start)), None)
    return (out, 0) if isinstance(out, str) else out


# --- libvirt ----------------------------------------------------------------------------


def test_a_running_domain_as_virsh_dumpxml_prints_it():
    """`virsh dumpxml vm-unit` (libvirt 9.0): memory in KiB, a running domain's aliases,
    targets and backing chain around what CloudVM compares."""
    xml = captured("virsh_dumpxml_running.xml")
    assert dx.parse_domain(xml) == {
        "uuid": "6f1d2c9a-4b7e-4f0a-9d35-2a8c1e7b5f40",
        "virt_type": "qemu",
        "max_memory_mib": 512,
        "memory_mib": 256,
        "max_vcpus": 2,
        "vcpus": 1,
        "nics": [
            {"mac": "52:54:00:3b:9e:d1", "bridge": "br0"},
            {"mac": "52:54:00:a4:07:5c", "network": "default"},
        ],
        "disk_path": "/mnt/cephfs/virtualmachines/vm-unit.qcow2",
        "seed_path": "/mnt/cephfs/config/vm-unit-seed.iso",
    }
    assert dx.owner(xml) == "cephkvm/unit"


# --- the QEMU guest agent ---------------------------------------------------------------


def agent_reply(request: dict) -> str:
    """What qemu-guest-agent 7.2 in a Debian 12 guest answers (`virsh qemu-agent-command`):
    instance-id and `systemctl is-system-running` as captured, cloud-init's result.json as
    the agent sends any file (base64)."""
    execute, args = request["execute"], request.get("arguments", {})
    if execute == "guest-file-open":
        return json.dumps({"return": 1000 if args["path"] == guest_agent.INSTANCE_ID else 1001})
    if execute == "guest-file-read" and args["handle"] == 1000:
        return captured("qga_guest_file_read_instance_id.json")
    if execute == "guest-file-read":
        result = captured("run_cloud_init_result_errors.json").encode()
        return json.dumps(
            {
                "return": {
                    "count": len(result),
                    "eof": True,
                    "buf-b64": base64.b64encode(result).decode(),
                }
            }
        )
    if execute == "guest-exec":
        return json.dumps({"return": {"pid": 2817}})
    if execute == "guest-exec-status":
        return captured("qga_guest_exec_status.json")
    return json.dumps({"return": {}})  # guest-ping, guest-file-close


def test_readiness_from_the_agents_replies_and_cloud_inits_result(monkeypatch):
    """cloud-init's /run/cloud-init/result.json after a failed runcmd: ready, errors kept."""
    monkeypatch.setattr(
        libvirt_qemu,
        "qemuAgentCommand",
        lambda _dom, text, _timeout, _flags: agent_reply(json.loads(text)),
    )
    seen = guest_agent.readiness(object(), "vm-unit-1-6105d6cc")
    assert seen.ready and seen.why == "cloud-init finished"
    assert seen.cloud_init_errors == [
        "('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"
    ]
    assert not guest_agent.readiness(object(), "vm-unit-2-6105d6cc").ready


# --- CephFS mounts ----------------------------------------------------------------------


def test_mounted_types_from_proc_self_mounts():
    """`cat /proc/self/mounts` on a node with a ceph-fuse and a kernel CephFS mount."""
    node = Replay({"cat /proc/self/mounts": captured("proc_mounts_fuse.txt")}).session()
    assert cephfs_mount._mounted_type(node, "/mnt/cephfs") == "fuse.ceph-fuse"
    assert cephfs_mount._mounted_type(node, "/mnt/cephfs-kernel") == "ceph"
    assert cephfs_mount._mounted_type(node, "/") == "ext4"
    assert cephfs_mount._mounted_type(node, "/mnt") == ""


LINE = "none /mnt/cephfs fuse.ceph ceph.id=cephfs-node1,ceph.client_fs=cephfs,_netdev,defaults 0 0"


def test_the_fstab_line_joins_a_debian_installers_fstab_once():
    """/etc/fstab as the Debian 12 installer writes it: comments that name mountpoints
    (`# / was on /dev/sda1`), UUID lines, swap, the CD-ROM."""
    text = captured("etc_fstab_debian12.txt")
    assert cephfs_mount._fstab_lines(text, "/") == [
        "UUID=2f6a1c4e-93b8-4d2a-a7f5-0e1d3c9b8a76 /               ext4    "
        "errors=remount-ro 0       1"
    ]
    added = cephfs_mount.with_line(text, LINE, "/mnt/cephfs")
    assert added == text + LINE + "\n"
    assert cephfs_mount.with_line(added, LINE, "/mnt/cephfs") == added


def test_a_client_the_blocklist_names_is_fenced_before_it_knows():
    """The admin socket's `status` of ceph-fuse (`ceph --admin-daemon
    /var/run/ceph/ceph-client.cephfs-node1.3352346.94....asok status`), one line per live
    client as the mount's script prints it (`tr -d "\\n"`), and `ceph osd blocklist ls`:
    the client still says blocklisted false, the cluster already lists its address."""
    status = captured("ceph_daemon_client_status.json").replace("\n", "")
    node = Replay(
        {
            "sh -c": f"3352346 {status}\n",
            "ceph --cluster ceph --connect-timeout 15 osd blocklist ls": captured(
                "osd_blocklist_ls.txt"
            ),
        }
    ).session()
    props = {"client": "fuse", "cluster_name": "ceph", "client_id": "cephfs-node1"}
    assert cephfs_mount._fuse_clients(node, props)[3352346]["addr_str"] == "192.0.2.11:0/3352346"
    assert cephfs_mount._fenced(node, props) == [3352346]


# --- OSD devices ------------------------------------------------------------------------

OSD = {"cluster_name": "ceph", "node": "node1", "device": "/dev/sdb", "method": "lvm"}


def test_the_osd_ceph_volume_lvm_list_reports():
    """`ceph-volume --cluster ceph lvm list /dev/sdb --format json` (Ceph 16.2.15)."""
    node = Replay(
        {"ceph-volume --cluster ceph lvm list /dev/sdb": captured("ceph_volume_lvm_list.json")}
    ).session()
    assert ceph_osd._listed(OSD, node) == {
        "osd_id": 1,
        "osd_uuid": "547b2149-7dd5-4c16-914a-87788103573b",
        "ceph_fsid": "e959455c-1819-4d66-b79e-db05370311d2",
    }


def test_a_disk_with_a_filesystem_is_refused_naming_its_signature():
    """`wipefs -n -p /dev/sdb` (util-linux 2.38) on a disk holding ext4; `blkid -p` sees
    it too (exit 0); no BlueStore label, so ceph-volume is not asked."""
    node = Replay(
        {
            "test -b /dev/sdb": "",
            "wipefs -n -p /dev/sdb": captured("wipefs_no_act_parsable.txt"),
            "blkid -p /dev/sdb": "",
            "sh -c 'l=$(head -c 23": "no\n",  # ext4 does not start with a BlueStore label
        }
    ).session()
    props = {**OSD, "method": "raw"}
    with pytest.raises(Failure, match=r"not empty \(ext4, a blkid-visible signature\)"):
        ceph_osd._preflight(props, node, ceph_osd._listed(props, node))


# --- VM images and node facts ---------------------------------------------------------


def test_a_cloud_images_format_and_an_overlay_refused():
    """`qemu-img info -U --output=json -- IMAGE` (QEMU 7.2) of Debian's genericcloud image,
    and of an overlay that refers to its template."""
    image = Replay({"qemu-img info": captured("qemu_img_info_cloud_image.json")}).session()
    assert vm_storage._image_format(image, "/images/debian.qcow2", "debian") == "qcow2"
    overlay = Replay({"qemu-img info": captured("qemu_img_info_overlay.json")}).session()
    with pytest.raises(Failure, match="refers to another file .*/templates/debian-"):
        vm_storage._image_format(overlay, "/images/vm.qcow2", "vm")


def test_node_facts_of_a_debian_12_kvm_host():
    """`sh -c NODE_FACTS_SCRIPT` (providers/facts.py) on a Debian 12 host with /dev/kvm."""
    assert facts.parse_node_facts(captured("node_facts_debian12.txt")) == {
        "hostname": "osd1",
        "arch": "x86_64",
        "os": "Debian GNU/Linux 12 (bookworm)",
        "init": "systemd",
        "kvm_available": True,
    }
