"""A CloudVM changed in place on its node: the disk grown, memory and vCPUs set live up to
the domain's maximum, a redefine with restart for what only that can change, NICs attached
and detached by MAC, the CD-ROM pointed at a new seed, the disk rolled back to a snapshot.
A live migration is vm_migrate's."""

from __future__ import annotations

import datetime
import posixpath

from providers import libvirt_conn, vm_storage
from providers import libvirt_domain as dx
from providers.errors import Failure


def grow_disk(node, dom, disk: str, gib: int) -> None:
    """Live through the guest's block device, else on the overlay itself."""
    import libvirt

    size = gib * 1024**3
    if dom.isActive():
        dom.blockResize("vda", size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    else:
        node.run(["qemu-img", "resize", "-q", disk, str(size)], change=True)


def resize_live(dom, olds: dict, news: dict) -> None:
    if olds.get("memory_mib") != news["memory_mib"]:
        libvirt_conn.both(dom.setMemoryFlags, news["memory_mib"] * 1024)
    if olds.get("vcpus") != news["vcpus"]:
        libvirt_conn.both(dom.setVcpusFlags, news["vcpus"])


def redefine_and_restart(conn, dom, news: dict, paths: dict) -> None:
    """The new definition (same uuid), then a graceful shutdown and a start of a domain that
    was running, so it boots with it."""
    conn.defineXML(dx.vm_xml(news, paths, uuid=dom.UUIDString()))
    was_running = dom.isActive()
    libvirt_conn.shutdown(dom, news["shutdown_timeout"])
    if was_running:
        libvirt_conn.domain(conn, news["name"]).create()


def update_nics(dom, olds: dict, news: dict) -> None:
    old = dict(zip(dx.nic_macs(olds["name"], olds.get("nics") or []), olds.get("nics") or []))
    new = dict(zip(dx.nic_macs(news["name"], news["nics"]), news["nics"]))
    for mac, nic in old.items():
        if mac not in new or new[mac] != nic:
            dom.detachDeviceFlags(dx.interface_xml(nic, mac), libvirt_conn.affect(dom))
    for mac, nic in new.items():
        if mac not in old or old[mac] != nic:
            dom.attachDeviceFlags(dx.interface_xml(nic, mac), libvirt_conn.affect(dom))


def swap_seed_media(dom, seed: str) -> None:
    """Point the CD-ROM at the new seed file (a new inode), so the next boot reads it."""
    dom.updateDeviceFlags(dx.cdrom_xml(seed), libvirt_conn.affect(dom))


def roll_back(node, dom, news: dict, paths: dict) -> None:
    """Shut down, put the snapshot's disk in place of the live one (kept beside it as
    NAME.qcow2.before-rollback-STAMP), start. The snapshot's seed is not taken: the guest
    boots with the current one. A run killed between the two renames finds the new disk
    in its partial file and finishes."""
    name, snap = news["name"], news["rollback_to"]
    src = posixpath.join(
        vm_storage.snapshot_dirs(news["storage"], name, snap)[0], posixpath.basename(paths["disk"])
    )
    if not node.ok(["test", "-f", src]):
        raise Failure(
            f"{name}: snapshot {name}@{snap} does not exist ({src}); list it in the VM's "
            "snapshots first. Nothing was changed."
        )
    disk, part = paths["disk"], paths["disk"] + ".rollback.part"
    libvirt_conn.shutdown(dom, news["shutdown_timeout"])
    if node.ok(["test", "-e", disk]):
        node.run(["cp", "--sparse=always", "--", src, part], change=True, timeout=3600)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        node.run(["mv", "--", disk, f"{disk}.before-rollback-{stamp}"], change=True)
    node.run(["mv", "--", part, disk], change=True)
    if news["disk_gib"] << 30 > int(vm_storage.image_info(node, disk)["virtual-size"]):
        node.run(["qemu-img", "resize", "-q", disk, f"{news['disk_gib']}G"], change=True)
    dom.create()
