"""What a running guest says about itself, through the QEMU guest agent (the virtio channel
every CloudVM has, see libvirt_domain.AGENT_CHANNEL).

A guest is ready when this boot's cloud-init has finished for the seed we wrote (its
instance-id) and systemd has finished starting units, so sshd and whatever cloud-init set up
answer: an address alone comes before either (the flake of issue 9). Only reads are sent:
guest-file-open/read of cloud-init's own files and `systemctl is-system-running`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from dataclasses import dataclass, field

INSTANCE_ID = "/var/lib/cloud/data/instance-id"
RESULT = "/run/cloud-init/result.json"  # written once cloud-init's final stage has run
SYSTEMCTL = "/bin/systemctl"
BOOTED = ("running", "degraded")  # `is-system-running` once start-up is over
EXEC_WAIT = 10  # seconds a short command in the guest may take to exit
EXEC_POLL = 0.2
FREEZE_WAIT = 60  # seconds the guest may take to flush and freeze its filesystems


class NoAgent(Exception):
    """The guest agent does not answer (not installed, not started yet, or blocked)."""


@dataclass
class Readiness:
    ready: bool
    why: str  # what is still missing, or "cloud-init finished"
    cloud_init_errors: list = field(default_factory=list)


def command(dom, execute: str, wait: int = 5, **arguments) -> dict:
    """One agent command; its `return` value (waiting up to `wait` seconds)."""
    import libvirt
    import libvirt_qemu

    request = {"execute": execute, **({"arguments": arguments} if arguments else {})}
    try:
        answer = libvirt_qemu.qemuAgentCommand(dom, json.dumps(request), wait, 0)
    except libvirt.libvirtError as err:
        raise NoAgent(str(err)) from None
    return json.loads(answer).get("return")


def read_file(dom, path: str, limit: int = 1 << 20) -> str | None:
    """The file's text, or None when the guest has no such file."""
    try:
        handle = command(dom, "guest-file-open", path=path, mode="r")
    except NoAgent as err:
        if "No such file" in str(err):
            return None
        raise
    try:
        chunk = command(dom, "guest-file-read", handle=handle, count=limit)
        return base64.b64decode(chunk.get("buf-b64") or "").decode(errors="replace")
    finally:
        command(dom, "guest-file-close", handle=handle)


def system_state(dom) -> str | None:
    """`systemctl is-system-running` in the guest; None where guest-exec is refused."""
    try:
        pid = command(
            dom, "guest-exec", path=SYSTEMCTL, arg=["is-system-running"], **{"capture-output": True}
        )["pid"]
    except NoAgent:
        return None
    deadline = time.monotonic() + EXEC_WAIT
    status = command(dom, "guest-exec-status", pid=pid)
    while not status.get("exited") and time.monotonic() < deadline:
        time.sleep(EXEC_POLL)
        status = command(dom, "guest-exec-status", pid=pid)
    if not status.get("exited"):
        return "not answering (systemctl did not exit)"
    return base64.b64decode(status.get("out-data") or "").decode().strip()


def readiness(dom, instance_id: str) -> Readiness:
    """One look at the guest (raises NoAgent while no agent answers)."""
    command(dom, "guest-ping")
    running = (read_file(dom, INSTANCE_ID) or "").strip()
    if running != instance_id:
        return Readiness(
            False,
            f"cloud-init runs instance {running or '(none yet)'}, the seed says {instance_id}",
        )
    result = read_file(dom, RESULT)
    if result is None:
        return Readiness(False, "cloud-init has not finished")
    state = system_state(dom)
    if state is not None and state not in BOOTED:
        return Readiness(False, f"systemd in the guest is {state!r}")
    try:
        errors = list(json.loads(result).get("v1", {}).get("errors") or [])
    except ValueError:
        errors = [f"unreadable {RESULT}"]
    return Readiness(True, "cloud-init finished", errors)


# --- quiescing ---------------------------------------------------------------------------


@contextlib.contextmanager
def frozen(dom):
    """The guest's filesystems flushed and frozen for the block (writes wait), thawed however
    the block ends. Yields "" when frozen, else why not (no agent, a freeze refused): what
    the block copies is then only crash-consistent."""
    if dom is None or not dom.isActive():
        yield "not quiesced: the VM is not running"
        return
    try:
        command(dom, "guest-fsfreeze-freeze", wait=FREEZE_WAIT)
    except NoAgent as err:
        yield f"not quiesced: the guest agent did not freeze ({err})"
        return
    try:
        yield ""
    finally:
        command(dom, "guest-fsfreeze-thaw", wait=FREEZE_WAIT)


def thaw_left_frozen(dom) -> bool:
    """Thaw a guest that a killed run left frozen (its writes would wait forever)."""
    if dom is None or not dom.isActive():
        return False
    try:
        if command(dom, "guest-fsfreeze-status") != "frozen":
            return False
        command(dom, "guest-fsfreeze-thaw", wait=FREEZE_WAIT)
        return True
    except NoAgent:
        return False
