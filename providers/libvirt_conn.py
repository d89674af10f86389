"""Live libvirt objects on a node, for whatever talks to its libvirtd (CloudVM, KvmBridge):
the connection, finding a domain or network by name, whose domain it is, shutting one down,
and the flags that change a domain's definition and its running guest. The XML itself is
libvirt_domain's (pure); the connection is carried by the node's SSH session
(transport.open_libvirt)."""

from __future__ import annotations

import time

import pulumi

from providers import libvirt_domain as dx
from providers.errors import Failure
from providers.transport import Session, open_libvirt


def connect(node: Session):
    """`with connect(node) as conn:` the node's system libvirtd (tests swap this for
    test:///default)."""
    return open_libvirt(node.host, node.private_key)


def domain(conn, name: str):
    """The domain of that name, or None."""
    import libvirt

    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def own(conn, props: dict, refuse: bool = False):
    """This stack's domain of props' name on conn, or None. A domain of that name which
    cephkvm did not make (or another stack did) is never ours: create refuses it, read and
    delete look past it."""
    dom = domain(conn, props["name"])
    if dom is None:
        return None
    owner = dx.owner(dom.XMLDesc(0))
    if owner == props.get("owner", ""):
        return dom
    if refuse:
        raise Failure(
            f"{props['name']}: {props['node']} already has a domain of that name that "
            f"{'stack ' + owner + ' made' if owner else 'cephkvm did not make'}; it is left "
            "alone. Give the VM another name, or remove that domain if it is left over."
        )
    pulumi.log.warn(
        f"{props['name']}: the domain of that name on {props['node']} is not this "
        "stack's; leaving it alone"
    )
    return None


def persistent_xml(dom) -> str:
    """The definition the next boot uses: live XML shows the balloon's momentary size."""
    import libvirt

    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def network(conn, name: str):
    """The libvirt network of that name, or None when libvirt finds none."""
    import libvirt

    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError:
        return None


def shutdown(dom, timeout: int) -> None:
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


def affect(dom) -> int:
    """The definition, and the running guest too when there is one."""
    import libvirt

    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    return flags | libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else flags


def both(call, *args) -> None:
    """Persistent config first, then the running guest: one call per target, since some
    drivers refuse LIVE|CONFIG together."""
    import libvirt

    call(*args, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    if call.__self__.isActive():
        call(*args, libvirt.VIR_DOMAIN_AFFECT_LIVE)
