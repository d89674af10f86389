"""When a CloudVM is usable, as its `wait_for` says: `none` (the domain runs), `address`
(the guest agent or a DHCP lease knows an address), `cloud-init` (the guest agent shows
this seed's cloud-init finished and systemd booted: guest_agent.readiness). `up` ends when
an operator (or the next stack) can use the VM, not when QEMU has started."""

from __future__ import annotations

import pulumi

from providers import base, guest_agent
from providers import libvirt_domain as dx

POLL = 2  # seconds between looks at a booting guest (the readiness probe runs in the guest)
ADDRESS_POLL = 0.5  # an address is a libvirt call away (a few ms), no work in the guest


def wait(dom, p: dict, iid: str) -> dict:
    """Until the guest is usable as wait_for says; its `ready` and `cloud_init_errors`."""
    name, macs, last = p["name"], dx.nic_macs(p["name"], p["nics"]), {}
    if p["wait_for"] == "none":
        return {"ready": bool(dom.isActive()), "cloud_init_errors": []}
    if p["wait_for"] == "address":
        base.wait_until(
            lambda: not macs or addresses(dom, macs),
            timeout=p["ready_timeout"],
            interval=ADDRESS_POLL,
            what=f"{name} to report an address",
            report=lambda: (
                "Neither the guest agent nor a DHCP lease knows one; "
                "set wait_for: none for a guest that reports none."
            ),
        )
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
        probe,
        timeout=p["ready_timeout"],
        interval=POLL,
        what=f"{name} to finish booting (cloud-init, through the guest agent)",
        report=lambda: (
            f"Last seen: {last.get('why')}. The domain is running; `pulumi up` "
            "waits again. For an image without qemu-guest-agent set wait_for: address or none; "
            "for a slow guest raise ready_timeout."
        ),
    )
    if found.cloud_init_errors:
        pulumi.log.warn(
            f"{name}: cloud-init finished with errors: "
            f"{'; '.join(map(str, found.cloud_init_errors))}"
        )
    return {"ready": True, "cloud_init_errors": found.cloud_init_errors}


def now(dom, p: dict) -> dict:
    """One look, for refresh: is the guest booted and cloud-init done (any instance)?"""
    if p.get("wait_for", "cloud-init") != "cloud-init":
        return {"ready": bool(dom.isActive()), "cloud_init_errors": []}
    try:
        found = guest_agent.readiness(dom, None)
    except guest_agent.NoAgent:
        return {"ready": False, "cloud_init_errors": []}
    return {"ready": found.ready, "cloud_init_errors": found.cloud_init_errors}


def addresses(dom, macs: list[str]) -> list[str]:
    """From the guest agent, else DHCP leases of a libvirt network; [] when neither knows."""
    import libvirt

    if not dom.isActive():
        return []
    for source in (
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
    ):
        try:
            found = dx.addresses(dom.interfaceAddresses(source), macs)
        except libvirt.libvirtError:
            continue
        if found:
            return found
    return []
