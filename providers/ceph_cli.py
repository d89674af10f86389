"""What the Ceph providers share: the `ceph` command line, keys, the admin node, waiting on
cluster state. Connections and commands still go through providers.transport only."""

from __future__ import annotations

import base64
import os
import re
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from providers import base, ceph_facts
from providers.transport import Session, TransportError

CONNECT_TIMEOUT = "15"  # seconds the ceph CLI tries to reach a mon before it gives up


def ceph_argv(cluster: str, *args) -> list[str]:
    return ["ceph", "--cluster", cluster, "--connect-timeout", CONNECT_TIMEOUT, *map(str, args)]


# The CLI as providers/ceph_lite.py runs it: a command for the mons is tried against its
# own signatures only, half a call's time (the rest is the CLI's, output and exit codes too).
LITE = (Path(__file__).parent / "ceph_lite.py").read_text()


def ceph(
    node: Session,
    cluster: str,
    *args,
    change: bool = False,
    check: bool = True,
    timeout: float = 120,
):
    return node.run(
        ["python3", "-", *ceph_argv(cluster, *args)],
        stdin=LITE,
        change=change,
        check=check,
        timeout=timeout,
    )


def ceph_json(node: Session, cluster: str, *args) -> str:
    return ceph(node, cluster, *args, "-f", "json").stdout


def admin_session(props: dict) -> Session:
    """The first reachable node holding the admin keyring: any of them can talk to the
    mons, so one node down does not stop pools or filesystems from being managed."""
    last = None
    for access in props["admin"]:
        node = base.session(access)
        try:
            node.run(["true"])
            return node
        except TransportError as err:
            last = err
    tried = ", ".join(str(a["connection"].get("name")) for a in props["admin"])
    raise TransportError(f"no admin node reachable, tried {tried} ({last})")


def gen_key() -> str:
    """A cephx secret in Ceph's own encoding: type 1 (AES), creation time, 16 random bytes."""
    secret = os.urandom(16)
    header = struct.pack("<hiih", 1, int(time.time()), 0, len(secret))
    return base64.b64encode(header + secret).decode()


KEY_LINE = re.compile(r"\[([^\]]+)\]\s*\n\s*key\s*=\s*(\S+)")


def keyring_keys(text: str | None) -> dict:
    """{entity: key} from a keyring file's text."""
    return dict(KEY_LINE.findall(text or ""))


def keyring(entity: str, key: str, caps: dict) -> str:
    lines = [f"[{entity}]", f"\tkey = {key}"]
    lines += [f'\tcaps {kind} = "{cap}"' for kind, cap in sorted(caps.items())]
    return "\n".join(lines) + "\n"


ADMIN_KEYRING = "*.client.admin.keyring"


def admin_keyring_name(cluster: str) -> str:
    return ADMIN_KEYRING.replace("*", cluster)


def local_clusters(node: Session) -> list[str]:
    """The clusters the node can ask about: it holds their config (/etc/ceph/NAME.conf)
    and admin keyring (a CephFS client or KVM-only node has the config alone)."""
    out = node.run(
        ["find", "/etc/ceph", "-maxdepth", "1", "-name", "*.conf", "-o", "-name", ADMIN_KEYRING],
        check=False,
    ).stdout
    names = [os.path.basename(p) for p in out.split()]
    return sorted(
        n[: -len(".conf")]
        for n in names
        if n.endswith(".conf") and admin_keyring_name(n[:-5]) in names
    )


def health(node: Session, cluster: str) -> dict:
    return ceph_facts.health(ceph_json(node, cluster, "health", "detail"))


def pg_states(node: Session, cluster: str, *which) -> dict:
    """{state: count} of the PGs `ceph pg WHICH` lists. The OSDs report PG states to the mgr
    only every mgr_stats_period (5 s), so the up ones are asked to report now first
    (`flush_pg_stats`, as Ceph's own QA does before it reads PG states): a wait sees a PG
    turn clean at the mgr's next tick (2 s), not up to 7 s later. A down OSD has nothing
    to report and answers ENXIO at once; one that hangs (its host just died, not yet marked
    down) is given up on after a few seconds, as the report only makes the answer fresher."""
    flush = ceph_argv(cluster, "tell", "osd.*", "flush_pg_stats")
    node.run(["timeout", "5", *flush], check=False)
    return ceph_facts.pg_states(ceph_json(node, cluster, "pg", *which))


def quorum(node: Session, cluster: str) -> list[str]:
    """Names of the mons in quorum; [] when no quorum answers."""
    result = ceph(node, cluster, "quorum_status", "-f", "json", check=False, timeout=30)
    return ceph_facts.quorum_names(result.stdout) if result.exit_code == 0 else []


def seen(wanted: str, running: bool, up: bool) -> str:
    """A daemon's `ensure` as read finds it: up; stopped as its node's maintenance asks; or
    down (drift: the next up starts it, or stops it again when it runs in maintenance)."""
    if wanted == "maintenance":
        return "up" if running else "maintenance"
    return "up" if up else "down"


def restart_asked(olds: dict, news: dict) -> bool:
    """A new `restart` value (cephkvm:ceph.restart) on a daemon that runs."""
    return (
        bool(news.get("restart"))
        and olds.get("restart") != news.get("restart")
        and olds.get("ensure") != "maintenance"
    )


# A restart in progress: a run that stopped a daemon and then failed or timed out waiting
# for it must not bounce it again when run again. The mark lives from the stop to the end
# of the update that asked (a value asked again later restarts again), keyed by the
# cluster's fsid and holding "old->new".
RESTARTED = "/run/cephkvm/restarted"


def _restart_mark(news: dict, name: str) -> str:
    return f"{RESTARTED}/{news['fsid']}-{name}"


def _restart_step(olds: dict, news: dict) -> str:
    return f"{olds.get('restart') or ''}->{news['restart']}"


# One provider process serves the stack: a daemon's restart holds this from its stop until
# it is back, so a rolling restart takes one daemon down at a time, while a bring-up makes
# the daemons of a kind side by side (no dependency chains them).
_RESTARTS = threading.Lock()


@contextmanager
def one_restart_at_a_time(olds: dict, news: dict):
    """Around a daemon's update: held only when the update restarts it."""
    if not restart_asked(olds, news):
        yield
        return
    with _RESTARTS:
        yield


def restart_pending(node: Session, olds: dict, news: dict, name: str) -> bool:
    """restart_asked, and daemon `name` (mon.node1, osd.0) has not been stopped for it."""
    if not restart_asked(olds, news):
        return False
    return (node.get(_restart_mark(news, name)) or "").strip() != _restart_step(olds, news)


def mark_restarted(node: Session, olds: dict, news: dict, name: str) -> None:
    """Right after the stop: from there on, converging starts it again anyway."""
    node.run(["mkdir", "-p", RESTARTED], change=True)
    node.put(_restart_mark(news, name), _restart_step(olds, news) + "\n")


def restart_done(node: Session, olds: dict, news: dict, name: str) -> None:
    """The update that asked for it has finished: the state holds the new value now."""
    if restart_asked(olds, news):
        node.run(["rm", "-f", _restart_mark(news, name)], change=True)


def ok_to_stop(node: Session, cluster: str, kind: str, ids: list) -> str:
    """'' when `ceph KIND ok-to-stop IDS` agrees (the quorum stays, every PG stays active),
    else what it says."""
    got = ceph(node, cluster, kind, "ok-to-stop", *ids, check=False)
    if got.exit_code == 0:
        return ""
    said = (got.stderr or got.stdout).strip().splitlines()
    return f"`ceph {kind} ok-to-stop {' '.join(map(str, ids))}` says: " + (
        said[-1] if said else f"exit {got.exit_code}"
    )


def wait_ok_to_stop(node: Session, cluster: str, kind: str, ids: list, timeout: float):
    """Until Ceph agrees: a restart waits for the previous node's daemons to be back."""
    base.wait_until(
        lambda: not ok_to_stop(node, cluster, kind, ids),
        timeout=timeout,
        interval=2,
        what=f"{kind} {' '.join(map(str, ids))} to be ok to stop",
        report=lambda: ok_to_stop(node, cluster, kind, ids),
    )


def wait_for_quorum(
    node: Session, cluster: str, timeout: float, mons=(), interval: float = 1.0
) -> list[str]:
    """Until a quorum answers that holds every mon in mons: what resources that need the
    cluster wait for (each mon's own create waits only for itself)."""
    wanted = set(mons)

    def probe():
        names = quorum(node, cluster)
        return names if names and wanted <= set(names) else None

    what = f"mons {', '.join(sorted(wanted))} in quorum" if wanted else "a mon quorum"
    return base.wait_until(
        probe,
        timeout=timeout,
        interval=interval,
        what=what,
        report=lambda: (
            f"In quorum, asked from {node.name}: {quorum(node, cluster) or 'none'}. Check the "
            "mons (CephMon resources) and their logs in /var/log/ceph."
        ),
    )
