"""CloudVM: a VM made from a cloud image, on one node, with its disks on shared storage.

What it owns, under `storage` (CephFS in production): the template imported once into
`templates/` (shared by every VM made from it, never deleted by a VM), a qcow2 overlay
`virtualmachines/NAME.qcow2` backed by it, the NoCloud seed `config/NAME-seed.iso`, and the
libvirt domain on its node, reached with libvirt-python over SSH (providers/transport.py).

Changes: a new node is a live migration (the domain ends up defined and running only there);
memory and vCPUs change live up to the domain's maximum, otherwise by graceful shutdown,
redefine and start (or fail, by `on_restart_needed: fail`); the disk grows live; a cloud-init
change writes a new seed with a new instance-id, which the guest applies on its next boot
(or replaces the VM, by `on_cloud_init_change: replace`); NICs are added and removed live.
"""
from __future__ import annotations

import contextlib
import secrets
import time
from typing import Optional

import pulumi
from pulumi.dynamic import CheckFailure, CreateResult, ReadResult, UpdateResult

from providers import base, guest_agent, vm_storage
from providers import libvirt_domain as dx
from providers.errors import Failure
from providers.schema.kvm import VmInputs
from providers.transport import known_hosts_line, libvirt_uri, open_libvirt

# --- input schema -----------------------------------------------------------------------
# providers/schema/kvm.py, VmInputs: each field's type, default, bounds and change class.
# Besides: ssh_private_key (secret; otherwise connection.key_file).
# outputs: uuid, host, state, macs, addresses, disk_path, seed_path, template_path,
#          instance_id, seed_generation, ready, cloud_init_errors
INPUTS = VmInputs
# The owner tag is written when the domain is defined; a renamed project or stack finds no
# domain of its own and refuses the one of that name (see _own).
REPLACES, UPDATES, STATE = base.tables(INPUTS)
CLOUD_INIT_FIELDS = ("cloud_init", "password")
# Fields that only a shutdown + redefine can change.
RESTART_FIELDS = ("max_memory_mib", "max_vcpus", "virt_type")
READY_POLL = 2  # seconds between looks at a booting guest
SHARED_FS = ("ceph", "fuse.ceph", "fuse.ceph-fuse", "nfs", "nfs4", "glusterfs",
             "fuse.glusterfs", "gfs2", "ocfs2")


class CloudVMProvider(base.Provider):
    INPUTS = INPUTS

    def fill(self, news):
        news.setdefault("max_memory_mib", news["memory_mib"])
        news.setdefault("max_vcpus", news["vcpus"])
        return news

    def rules(self, news, olds):
        old, new = olds.get("disk_gib"), news.get("disk_gib")
        if isinstance(old, int) and isinstance(new, int) and new < old:
            return [CheckFailure("disk_gib", f"disks only grow: it is {old} GiB; shrinking "
                                 "would lose data (make a new VM instead)")]
        return []

    def diff(self, _id, olds, news):
        olds, news = base.normalize(olds), base.normalize(news)
        replaces = REPLACES + (CLOUD_INIT_FIELDS if news.get("on_cloud_init_change") ==
                               "replace" else ())
        # Two domains of one name cannot coexist on a node: the old one goes first.
        return base.diff_result(olds, news, replaces=replaces, updates=UPDATES, state=STATE,
                                delete_before_replace=True)

    def create(self, props):
        props = base.normalize(props)
        node = base.session(props)
        vm_storage.make_dirs(node, props["storage"])
        template = vm_storage.import_template(node, props)
        paths = vm_storage.paths({**props, "template_path": template})
        vm_storage.make_overlay(node, paths, props["disk_gib"])
        seed = vm_storage.write_seed(node, props, paths["seed"], generation=1)
        with _libvirt(props) as conn:
            dom = _own(conn, props, refuse=True)
            if dom is None:
                dom = conn.defineXML(dx.domain_xml(_domain_params(props, paths)))
            if not dom.isActive():
                dom.create()
            dom.setAutostart(1 if props["autostart"] else 0)
            outs = {**_wait_ready(dom, props, seed["instance_id"]), **_observe(dom, props)}
        return CreateResult(props["name"],
                            {**props, **vm_storage.paths_out(paths), **seed, **outs})

    def read(self, id_, props):
        props = base.normalize(props)
        for where in _candidates(props):
            with _libvirt(where) as conn:
                dom = _own(conn, where)
                if dom is None:
                    continue
                # The persistent definition: live XML shows the balloon's momentary size.
                found = dx.parse_domain(dom.XMLDesc(_inactive()))
                outs = {**_ready_now(dom, props), **_observe(dom, where)}
            # Drift shows as differences from the inputs: a hand migration as a node change.
            return ReadResult(id_, {**props, **outs, "connection": where["connection"],
                                    "node": where["node"],
                                    **{k: found[k] for k in ("memory_mib", "max_memory_mib",
                                                             "vcpus", "max_vcpus",
                                                             "virt_type")}})
        return ReadResult("", {})

    def update(self, _id, olds, news):
        olds, news = base.normalize(olds), base.normalize(news)
        changed = self.changed(olds, news)
        restart = bool(changed & set(RESTART_FIELDS))
        if restart and news["on_restart_needed"] == "fail":
            raise Failure(
                f"{news['name']}: changing {', '.join(sorted(changed & set(RESTART_FIELDS)))} "
                "needs the VM restarted, and on_restart_needed is 'fail'. Set it to 'restart' "
                "or raise max_memory_mib/max_vcpus ahead of time.")
        if olds["node"] != news["node"]:
            _migrate(olds, news)
        node = base.session(news)
        paths = vm_storage.paths({**news, "template_path": olds.get("template_path")})
        seed = {k: olds.get(k) for k in ("instance_id", "seed_generation")}
        if changed & set(CLOUD_INIT_FIELDS):
            seed = vm_storage.write_seed(node, news, paths["seed"],
                                         generation=int(olds.get("seed_generation") or 1) + 1)
        with _libvirt(news) as conn:
            dom = _lookup(conn, news["name"])
            if dom is None:
                raise Failure(f"{news['name']}: not defined on {news['node']}; run "
                                   "`pulumi refresh` to see where it is")
            if "disk_gib" in changed:
                _grow_disk(node, dom, paths["disk"], news["disk_gib"])
            if "nics" in changed:
                _update_nics(dom, olds, news)
            if "cloud_init" in changed or "password" in changed:
                _swap_seed_media(dom, paths["seed"])
            # A guest that keeps running stays as ready as it was; a restarted one is waited for.
            ready = {k: olds.get(k) for k in ("ready", "cloud_init_errors")}
            if restart:
                _redefine_and_restart(conn, dom, news, paths)
                dom = _lookup(conn, news["name"])
                ready = _wait_ready(dom, news, seed["instance_id"])
            else:
                _resize_live(dom, olds, news)
            dom.setAutostart(1 if news["autostart"] else 0)
            outs = {**ready, **_observe(dom, news)}
        return UpdateResult({**news, **vm_storage.paths_out(paths), **seed, **outs})

    def delete(self, _id, props):
        props = base.normalize(props)
        found = False
        for where in _candidates(props):  # it may have been migrated by hand
            with _libvirt(where) as conn:
                dom = _own(conn, where)
                if dom is not None:
                    _shutdown(dom, props["shutdown_timeout"])
                    dom.undefine()
                    found = True
                    break
        paths = vm_storage.paths(props)
        if props.get("keep_disk"):
            return
        if not found:  # running somewhere we cannot see, or not ours: its disk may be in use
            pulumi.log.warn(f"{props['name']}: no domain of this stack on any KVM node, so its "
                            f"disk {paths['disk']} is kept; remove it by hand once unused")
            return
        base.session(props).run(["rm", "-f", "--", paths["disk"], paths["seed"]], change=True)


# --- libvirt ----------------------------------------------------------------------------


def _libvirt(props: dict):
    """A libvirt connection to props' node (tests swap this for test:///default)."""
    node = base.session(props)
    return open_libvirt(node.host, node.private_key)


def _inactive() -> int:
    import libvirt
    return libvirt.VIR_DOMAIN_XML_INACTIVE


def _candidates(props: dict) -> list[dict]:
    """props as seen from its own node first, then from each peer node."""
    out = [props]
    for peer in props.get("peers") or []:
        if peer.get("name") != props["connection"].get("name"):
            out.append({**props, "connection": peer, "node": peer["name"]})
    return out


def _own(conn, props: dict, refuse: bool = False):
    """This stack's domain of props' name on conn, or None. A domain of that name which
    cephkvm did not make (or another stack did) is never ours: create refuses it, read and
    delete look past it."""
    dom = _lookup(conn, props["name"])
    if dom is None:
        return None
    owner = dx.owner(dom.XMLDesc(0))
    if owner == props.get("owner", ""):
        return dom
    if refuse:
        raise Failure(
            f"{props['name']}: {props['node']} already has a domain of that name that "
            f"{'stack ' + owner + ' made' if owner else 'cephkvm did not make'}; it is left "
            "alone. Give the VM another name, or remove that domain if it is left over.")
    pulumi.log.warn(f"{props['name']}: the domain of that name on {props['node']} is not this "
                    "stack's; leaving it alone")
    return None


def _lookup(conn, name: str):
    import libvirt
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _domain_params(p: dict, paths: dict, uuid: str | None = None) -> dict:
    return {**p, "disk_path": paths["disk"], "seed_path": paths["seed"], "uuid": uuid,
            "macs": dx.nic_macs(p["name"], p["nics"]),
            "serial_log": f"/var/log/libvirt/qemu/{p['name']}-serial.log"}


def _observe(dom, p: dict) -> dict:
    macs = dx.nic_macs(p["name"], p["nics"])
    state, _ = dom.state()
    return {"uuid": dom.UUIDString(), "host": p["node"], "state": dx.state_name(state),
            "macs": macs, "addresses": _addresses(dom, macs)}


def _wait_ready(dom, p: dict, iid: str) -> dict:
    """Until the guest is usable as wait_for says: `up` ends when an operator (or the next
    stack) can use the VM, not when QEMU has started."""
    name, macs, last = p["name"], dx.nic_macs(p["name"], p["nics"]), {}
    if p["wait_for"] == "none":
        return {"ready": bool(dom.isActive()), "cloud_init_errors": []}
    if p["wait_for"] == "address":
        base.wait_until(lambda: not macs or _addresses(dom, macs), timeout=p["ready_timeout"],
                        interval=READY_POLL, what=f"{name} to report an address",
                        report=lambda: "Neither the guest agent nor a DHCP lease knows one; "
                        "set wait_for: none for a guest that reports none.")
        return {"ready": True, "cloud_init_errors": []}

    def probe():
        try:
            found = guest_agent.readiness(dom, iid)
        except guest_agent.NoAgent as err:
            last["why"] = f"no guest agent answered ({err})"
            return None
        last["why"] = found.why
        return found if found.ready else None

    found = base.wait_until(
        probe, timeout=p["ready_timeout"], interval=READY_POLL,
        what=f"{name} to finish booting (cloud-init, through the guest agent)",
        report=lambda: f"Last seen: {last.get('why')}. The domain is running; `pulumi up` "
        "waits again. For an image without qemu-guest-agent set wait_for: address or none; "
        "for a slow guest raise ready_timeout.")
    if found.cloud_init_errors:
        pulumi.log.warn(f"{name}: cloud-init finished with errors: "
                        f"{'; '.join(map(str, found.cloud_init_errors))}")
    return {"ready": True, "cloud_init_errors": found.cloud_init_errors}


def _ready_now(dom, p: dict) -> dict:
    """One look, for refresh: is the guest booted and cloud-init done (any instance)?"""
    if p.get("wait_for", "cloud-init") != "cloud-init":
        return {"ready": bool(dom.isActive()), "cloud_init_errors": []}
    try:
        found = guest_agent.readiness(dom, None)
    except guest_agent.NoAgent:
        return {"ready": False, "cloud_init_errors": []}
    return {"ready": found.ready, "cloud_init_errors": found.cloud_init_errors}


def _addresses(dom, macs: list[str]) -> list[str]:
    """From the guest agent, else DHCP leases of a libvirt network; [] when neither knows."""
    import libvirt
    if not dom.isActive():
        return []
    for source in (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
                   libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE):
        try:
            found = dx.addresses(dom.interfaceAddresses(source), macs)
        except libvirt.libvirtError:
            continue
        if found:
            return found
    return []


def _shutdown(dom, timeout: int) -> None:
    """ACPI shutdown, then destroy what has not stopped within timeout."""
    import libvirt
    if not dom.isActive():
        return
    try:
        dom.shutdown()
    except libvirt.libvirtError:
        pass  # e.g. no ACPI in the guest yet: destroy below
    deadline = time.monotonic() + timeout
    while dom.isActive() and time.monotonic() < deadline:
        time.sleep(1)
    if dom.isActive():
        dom.destroy()


# --- changes ----------------------------------------------------------------------------


def _migrate(olds: dict, news: dict) -> None:
    """Live migration from the old node to the new one, peer to peer: the source libvirtd
    connects to the destination's itself (as measured in DESIGN.md 5). The controller-managed
    mode (migrate3 with two client connections) hung here after QEMU had finished: the
    destination's Prepare never returned over libssh."""
    import libvirt
    src_props = {**news, "connection": olds["connection"], "node": olds["node"]}
    with _libvirt(news) as dconn, _libvirt(src_props) as sconn:
        dom = _lookup(sconn, news["name"])
        if dom is None:
            if _lookup(dconn, news["name"]) is not None:
                return  # already there (an earlier run was killed after migrating)
            raise Failure(f"{news['name']}: on neither {olds['node']} nor "
                               f"{news['node']}; run `pulumi refresh`")
        if _lookup(dconn, news["name"]) is not None:
            raise Failure(f"{news['name']}: defined on both {olds['node']} and "
                               f"{news['node']}; undefine the stale copy by hand")
        if not dom.isActive():
            dconn.defineXML(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE |
                                        libvirt.VIR_DOMAIN_XML_SECURE))
            dom.undefine()
            return
        source = base.session(src_props)
        if not storage_is_shared(source, news):
            raise Failure(
                f"{news['name']}: {news['storage']} on {olds['node']} is not CephFS or other "
                "shared storage, so a live migration would lose the disk. Mount CephFS there, "
                "or set shared_storage if every node sees the same directory.")
        # libvirt cannot tell that CephFS is shared and refuses without UNSAFE (DESIGN.md 5).
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
                 libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE |
                 libvirt.VIR_MIGRATE_UNSAFE)
        params = ({libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: news["migration_bandwidth_mib"]}
                  if news.get("migration_bandwidth_mib") else {})
        with _peer_uri(source, base.session(news), news) as uri:
            dom.migrateToURI3(uri, params, flags)


@contextlib.contextmanager
def _peer_uri(source, dest, news: dict):
    """The destination's libvirt URI as the source libvirtd uses it: the stack's migration
    key (already on every KVM node; the controller's key never leaves the controller) and
    the destination's pinned host key, in a root-only directory on the source that exists
    only for the migration."""
    pin = known_hosts_line(dest.host)
    if not news.get("migration_key") or not pin:
        raise Failure(
            f"{news['name']}: moving it to {dest.name} needs the stack's migration key on "
            f"the KVM nodes and {dest.name}'s host key (pinned or recorded); run `pulumi up` "
            "with both nodes listed with the kvm role")
    tmp = f"/run/cephkvm/migrate-{secrets.token_hex(6)}"
    source.run(["mkdir", "-p", "-m", "0700", tmp], change=True)
    try:
        source.put(f"{tmp}/known_hosts", pin, mode="0600")
        yield libvirt_uri(dest.host, news["migration_key"], f"{tmp}/known_hosts")
    finally:
        source.run(["rm", "-rf", "--", tmp], change=True)


def storage_is_shared(node, p: dict) -> bool:
    if p.get("shared_storage"):
        return True
    out = node.run(["findmnt", "-n", "-o", "FSTYPE", "--target", p["storage"]],
                   check=False).stdout.strip()
    return out in SHARED_FS


def _grow_disk(node, dom, disk: str, gib: int) -> None:
    import libvirt
    size = gib * 1024 ** 3
    if dom.isActive():
        dom.blockResize("vda", size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    else:
        node.run(["qemu-img", "resize", "-q", disk, str(size)], change=True)


def _flags(dom) -> int:
    import libvirt
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    return flags | libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else flags


def _both(call, *args) -> None:
    """Persistent config first, then the running guest: one call per target, since some
    drivers refuse LIVE|CONFIG together."""
    import libvirt
    call(*args, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    if call.__self__.isActive():
        call(*args, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def _resize_live(dom, olds: dict, news: dict) -> None:
    if olds.get("memory_mib") != news["memory_mib"]:
        _both(dom.setMemoryFlags, news["memory_mib"] * 1024)
    if olds.get("vcpus") != news["vcpus"]:
        _both(dom.setVcpusFlags, news["vcpus"])


def _redefine_and_restart(conn, dom, news: dict, paths: dict) -> None:
    conn.defineXML(dx.domain_xml(_domain_params(news, paths, uuid=dom.UUIDString())))
    was_running = dom.isActive()
    _shutdown(dom, news["shutdown_timeout"])
    if was_running:
        _lookup(conn, news["name"]).create()


def _update_nics(dom, olds: dict, news: dict) -> None:
    old = dict(zip(dx.nic_macs(olds["name"], olds.get("nics") or []), olds.get("nics") or []))
    new = dict(zip(dx.nic_macs(news["name"], news["nics"]), news["nics"]))
    for mac, nic in old.items():
        if mac not in new or new[mac] != nic:
            dom.detachDeviceFlags(dx.interface_xml(nic, mac), _flags(dom))
    for mac, nic in new.items():
        if mac not in old or old[mac] != nic:
            dom.attachDeviceFlags(dx.interface_xml(nic, mac), _flags(dom))


def _swap_seed_media(dom, seed: str) -> None:
    """Point the CD-ROM at the new seed file (a new inode), so the next boot reads it."""
    dom.updateDeviceFlags(dx.cdrom_xml(seed), _flags(dom))


class CloudVM(pulumi.dynamic.Resource, module="cephkvm", name="CloudVM"):
    uuid: pulumi.Output[str]
    host: pulumi.Output[str]
    state: pulumi.Output[str]
    macs: pulumi.Output[list]
    addresses: pulumi.Output[list]
    disk_path: pulumi.Output[str]
    seed_path: pulumi.Output[str]
    template_path: pulumi.Output[str]
    instance_id: pulumi.Output[str]
    ready: pulumi.Output[bool]
    cloud_init_errors: pulumi.Output[list]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        outputs = {k: None for k in ("uuid", "host", "state", "macs", "addresses", "disk_path",
                                     "seed_path", "template_path", "instance_id",
                                     "seed_generation", "ready", "cloud_init_errors")}
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            additional_secret_outputs=["password", "ssh_private_key"]))
        super().__init__(CloudVMProvider(), name, {**outputs, **props}, opts)
