"""CephFSMount: CephFS mounted on one node, the way the runbook does it, but safely.

A dedicated client key whose caps cover only the filesystem (`ceph fs authorize`), its
keyring with mode 0600, the mountpoint, exactly one fstab line for the mountpoint however
often it runs, the mount (ceph-fuse by default; the kernel client as an option), and a
write/read check. A change of options remounts; delete unmounts (refused while busy unless
forced) and removes the fstab line and the key.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts
from providers.ceph_cli import admin_session, ceph, keyring
from providers.errors import Failure, Timeout
from providers.schema.ceph import MountInputs
from providers.transport import TransportError

FSTAB = "/etc/fstab"

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py MountInputs (+ ssh_private_key?)
# outputs: client_key (secret), fstab_line
INPUTS = MountInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
MOUNT_TYPES = {"fuse": "fuse.ceph-fuse", "kernel": "ceph"}
EXIT_TIMEOUT = 120  # for an unmounted ceph-fuse to flush, close its session and exit


class CephFSMountProvider(base.Provider):
    INPUTS = INPUTS
    SETTLE = True
    DELETE_BEFORE_REPLACE = True  # one fstab line per mountpoint

    def fill(self, news):
        news.setdefault("client_id", f"{news.get('fs_name')}-{news.get('node')}")
        return news

    def create(self, props):
        outs = _converge(props, self.node, remount=False)
        return CreateResult(f"{props['node']}:{props['mountpoint']}", {**props, **outs})

    def read(self, id_, props):
        node = self.node
        lines = _fstab_lines(node.get(FSTAB) or "", props["mountpoint"])
        mounted = _mounted_type(node, props["mountpoint"])
        if not lines and not mounted:
            return ReadResult("", {})
        # Listed is not enough: an evicted client or a dead FUSE daemon stays in the mount
        # table while every access fails. That is drift `up` heals.
        usable = mounted == MOUNT_TYPES[props["client"]] and _usable(node, props)
        return ReadResult(
            id_,
            {
                **props,
                "fstab_line": "\n".join(lines),
                "ensure": "mounted" if usable else "unmounted",
            },
        )

    def update(self, _id, olds, news):
        remount = fstab_line(olds) != fstab_line(news)
        return UpdateResult({**news, **_converge(news, self.node, remount=remount)})

    def delete(self, _id, props):
        node = self.node
        mp = props["mountpoint"]
        if _mounted_type(node, mp):
            _unmount(props, node)
        _fstab_edit(props, node, lambda text: _without(text, mp))
        node.run(["rm", "-f", _keyring_path(props), _secret_path(props)], change=True)
        ceph(
            _admin(props, node),
            props["cluster_name"],
            "auth",
            "rm",
            f"client.{props['client_id']}",
            change=True,
            check=False,
        )
        node.run(["rmdir", "--ignore-fail-on-non-empty", mp], change=True, check=False)


# --- pieces -----------------------------------------------------------------------------


def _keyring_path(props: dict) -> str:
    return f"/etc/ceph/{props['cluster_name']}.client.{props['client_id']}.keyring"


def _secret_path(props: dict) -> str:
    return f"/etc/ceph/{props['cluster_name']}.client.{props['client_id']}.secret"


def fstab_line(props: dict) -> str:
    """The one fstab line for this mount (the runbook's `fuse.ceph` form by default)."""
    c, cid, fs = props["cluster_name"], props["client_id"], props["fs_name"]
    extra = [o for o in props.get("options") or [] if o != "defaults"]
    if props.get("client", "fuse") == "fuse":
        opts = [f"ceph.id={cid}", f"ceph.client_fs={fs}"]
        if c != "ceph":
            opts.append(f"ceph.conf=/etc/ceph/{c}.conf")
        opts += ["_netdev", "defaults"] + extra
        return f"none {props['mountpoint']} fuse.ceph {','.join(opts)} 0 0"
    hosts = ",".join(h.rsplit(":", 1)[0] for h in props.get("mon_hosts") or [])
    opts = [
        f"name={cid}",
        f"secretfile={_secret_path(props)}",
        f"mds_namespace={fs}",
        "_netdev",
    ] + extra
    return f"{hosts}:/ {props['mountpoint']} ceph {','.join(opts)} 0 0"


def _fstab_lines(text: str, mountpoint: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if not line.lstrip().startswith("#")
        and len(line.split()) > 1
        and line.split()[1] == mountpoint
    ]


def _without(text: str, mountpoint: str) -> str:
    kept = [line for line in text.splitlines() if line not in _fstab_lines(text, mountpoint)]
    return "\n".join(kept) + ("\n" if kept else "")


def with_line(text: str, line: str, mountpoint: str) -> str:
    """fstab text with exactly one line for mountpoint: this one, other lines untouched."""
    if _fstab_lines(text, mountpoint) == [line]:
        return text
    return _without(text, mountpoint) + line + "\n"


def _write_fstab(props: dict, node, text: str) -> None:
    """Replace /etc/fstab with text: a temp file of its own (mktemp, no name another mount
    shares), fsynced, the old one kept as fstab.cephkvm.bak, then renamed over it. Where
    fstab is itself a mount (a bind mount, as on the lab nodes) a rename cannot replace it:
    it is rewritten in place from the complete, fsynced copy."""
    script = (
        "set -e; f=/etc/fstab; tmp=$(mktemp /etc/.fstab.cephkvm.XXXXXX); "
        'trap \'rm -f "$tmp"\' EXIT; cat > "$tmp"; sync "$tmp"; '
        'cp -p "$f" "$f.cephkvm.bak" 2>/dev/null || true; '
        'if mountpoint -q "$f"; then cat "$tmp" > "$f"; sync "$f"; '
        'else chmod 0644 "$tmp"; mv -f "$tmp" "$f"; fi'
    )
    node.run(["sh", "-c", script], stdin=text, change=True)


def _fstab_edit(props: dict, node, edit) -> None:
    """fstab read, changed by edit(text), written back: one edit at a time per node (every
    mount of the stack is served by this one process), from a copy that was readable."""
    with _fstab_lock(props["node"]):
        text = node.get(FSTAB)
        if text is None:
            text = ""  # no fstab at all: ours is its first line
        foreign = [
            line
            for line in _fstab_lines(text, props["mountpoint"])
            if line.split()[2:3] not in (["fuse.ceph"], ["ceph"])
        ]
        if foreign:
            raise Failure(
                f"{props['node']}: /etc/fstab already has a line for "
                f"{props['mountpoint']} that cephkvm did not write ({foreign[0]!r}); "
                "refusing to touch it. Choose another mountpoint, or remove that "
                "line by hand."
            )
        wanted = edit(text)
        if wanted != text:
            _write_fstab(props, node, wanted)


_FSTAB_LOCKS: dict = {}
_FSTAB_LOCKS_GUARD = threading.Lock()


def _fstab_lock(node_name: str) -> threading.Lock:
    with _FSTAB_LOCKS_GUARD:
        return _FSTAB_LOCKS.setdefault(node_name, threading.Lock())


def _usable(node, props: dict) -> bool:
    """The mount answers (stat within a bound: a hung mount never returns) and no ceph-fuse
    of its client is fenced: an evicted client still answers stat and even writes from its
    cache, but nothing reaches the cluster any more."""
    return _answers(node, props["mountpoint"]) and not _fenced(node, props)


def _answers(node, mountpoint: str) -> bool:
    return node.ok(["timeout", "15", "stat", "--", mountpoint])


def _fenced(node, props: dict) -> list[int]:
    """pids of this client's live ceph-fuse processes that the cluster fenced (evicted and
    blocklisted). A client learns it was blocklisted only from a newer OSD map, which it may
    not have yet right after a partition heals: the cluster's blocklist decides, the client's
    own `status` (admin socket, read only) only speaks first. A socket that does not answer
    in 5 s says nothing either way (a hung mount fails the stat above)."""
    clients = _fuse_clients(node, props)
    fenced = [pid for pid, status in clients.items() if status.get("blocklisted")]
    rest = {pid: _addr(status) for pid, status in clients.items() if pid not in fenced}
    if any(rest.values()):
        listed = _blocklist(_admin(props, node), props["cluster_name"])
        fenced += [pid for pid, addr in rest.items() if addr and addr in listed]
    return sorted(fenced)


def _fuse_clients(node, props: dict) -> dict[int, dict]:
    """This client's live ceph-fuse processes and what each says of itself (`status`)."""
    if props["client"] != "fuse":
        return {}
    script = _each_live_asok(
        props,
        's=$(timeout 5 ceph --admin-daemon "$a" status '
        "2>/dev/null) || continue; "
        'printf "%s " "$p"; echo "$s" | tr -d "\n"; echo',
    )
    try:
        out = node.run(["sh", "-c", script], check=False, timeout=120).stdout
    except TransportError:
        return {}
    clients = {}
    for line in out.splitlines():
        pid, _, doc = line.partition(" ")
        try:
            status = json.loads(doc)
        except ValueError:
            continue
        if pid.isdigit() and isinstance(status, dict):
            status["blocklisted"] = status.get("blocklisted", status.get("blacklisted"))
            clients[int(pid)] = status
    return clients


def _each_live_asok(props: dict, body: str) -> str:
    """A script running body for each admin socket of this client whose process lives ($a the
    socket, $p its pid): ceph-fuse's sockets are PREFIX.PID.CCTID.asok."""
    prefix = f"/var/run/ceph/{props['cluster_name']}-client.{props['client_id']}"
    return (
        f'pre={shlex.quote(prefix)}; for a in "$pre".*.asok; do [ -S "$a" ] || continue; '
        f'p=${{a#"$pre".}}; p=${{p%%.*}}; [ -d "/proc/$p" ] || continue; {body}; done; true'
    )


def _addr(status: dict) -> str:
    """A client's address as the blocklist writes it ("v1:IP:0/NONCE" -> "IP:0/NONCE")."""
    addr = str(status.get("addr_str") or status.get("inst_str", "").split(" ")[-1])
    return addr.split(":", 1)[1] if addr.startswith(("v1:", "v2:", "any:")) else addr


def _blocklist(node, cluster: str) -> set[str]:
    """The cluster's blocklisted addresses; none when the cluster (or the admin node) does
    not answer: then no client can be told fenced, and a hung one fails the stat."""
    try:
        result = ceph(node, cluster, "osd", "blocklist", "ls", check=False, timeout=60)
    except TransportError:
        return set()
    if result.exit_code:
        return set()
    return {line.split()[0] for line in result.stdout.splitlines() if line.strip()}


def _mounted_type(node, mountpoint: str) -> str:
    """The filesystem type mounted at mountpoint ('' when none), from /proc/self/mounts."""
    out = node.run(["cat", "/proc/self/mounts"]).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1] == mountpoint:
            return parts[2]
    return ""


def _admin(props: dict, node):
    return admin_session(props) if props.get("admin") else node


def _client_key(props: dict, node) -> str:
    """The client's key: created with caps for this filesystem only, or the existing one
    when its caps already name the filesystem."""
    c, entity = props["cluster_name"], f"client.{props['client_id']}"
    node = _admin(props, node)
    got = ceph(node, c, "auth", "get", entity, "-f", "json", check=False)
    found = ceph_facts.auth_entity(got.stdout) if got.exit_code == 0 else {}
    if found and f"fsname={props['fs_name']}" not in found["caps"].get("mds", "") + found[
        "caps"
    ].get("osd", ""):
        raise Failure(
            f"{entity} exists with caps for another filesystem; choose another "
            "client_id or remove that key"
        )
    if not found:
        # rws: read, write, and snapshots (VmSnapshot makes them through this mount). It
        # answers with the entity as `auth get` does.
        authorize = ["fs", "authorize", props["fs_name"], entity, "/", "rws", "-f", "json"]
        made = ceph(node, c, *authorize, change=True)
        found = ceph_facts.auth_entity(made.stdout) or ceph_facts.auth_entity(
            ceph(node, c, "auth", "get", entity, "-f", "json").stdout
        )
    elif re.match(r"allow rw\b(?!s)", found["caps"].get("mds", "")):  # made before snapshots
        caps = {**found["caps"], "mds": re.sub(r"^allow rw\b", "allow rws", found["caps"]["mds"])}
        ceph(node, c, "auth", "caps", entity, *[x for kv in caps.items() for x in kv], change=True)
        found = {**found, "caps": caps}
    return found["key"], found["caps"]


def _converge(props: dict, node, remount: bool) -> dict:
    mp = props["mountpoint"]
    found = _mounted_type(node, mp)
    if found and found not in MOUNT_TYPES.values():
        raise Failure(
            f"{props['node']}: {mp} is already a {found} mount, which cephkvm did "
            "not make; refusing to unmount or cover it. Choose another mountpoint "
            "for CephFS. Nothing was changed."
        )
    fenced = _fenced(node, props) if found else []
    if found and (fenced or not _answers(node, mp)):
        # Dead (evicted, transport not connected): nothing can use it; detach it so the
        # mountpoint is a directory again and the mount below starts afresh, and end its
        # fenced client, which would otherwise linger and be taken for the new one.
        node.run(["umount", "-l", mp], change=True)
        if fenced:
            node.run(["kill", "-9", *map(str, fenced)], change=True, check=False)
        _wait_gone(props, node, fenced)
    key, caps = _client_key(props, node)
    node.put_if_changed(
        _keyring_path(props),
        keyring(f"client.{props['client_id']}", key, caps),
        mode="0600",
        secret=True,
    )
    if props["client"] == "kernel":
        node.put_if_changed(_secret_path(props), key + "\n", mode="0600", secret=True)
    if not node.ok(["test", "-d", mp]):
        node.run(["mkdir", "-p", mp], change=True)
    line = fstab_line(props)
    _fstab_edit(props, node, lambda text: with_line(text, line, mp))
    mounted = _mounted_type(node, mp)
    if mounted and (remount or mounted != MOUNT_TYPES[props["client"]]):
        before = _fuse_pids(node, props)
        _unmount(props, node)
        _wait_gone(props, node, before)
        mounted = ""
    if not mounted:
        _mount(props, node)
    _probe(props, node)
    return {"client_key": key, "fstab_line": line, "ensure": "mounted"}


def _mount(props: dict, node) -> None:
    """mount, then the mount table must list it: ceph-fuse may exit after its parent said
    all is well (a pidfile another ceph-fuse of this client holds), and a probe would then
    write into the bare mountpoint directory and pass."""
    mp = props["mountpoint"]
    result = node.run(["mount", mp], change=True, timeout=120)
    if _mounted_type(node, mp) == MOUNT_TYPES[props["client"]]:
        return
    log = f"/var/log/ceph/{props['cluster_name']}-client.{props['client_id']}.log"
    tail = node.run(["tail", "-n", "5", log], check=False).stdout.strip()
    raise Failure(
        f"{props['node']}: `mount {mp}` exited 0 but nothing is mounted there "
        f"({(result.stderr.strip() or tail or 'no message')[-600:]}). See {log}; "
        "run `pulumi up` again once the cause is gone."
    )


def _fuse_pids(node, props: dict) -> list[int]:
    """pids of this client's live ceph-fuse processes, from their admin sockets' names."""
    if props["client"] != "fuse":
        return []
    out = node.run(["sh", "-c", _each_live_asok(props, 'echo "$p"')], check=False).stdout
    return sorted(int(p) for p in out.split() if p.isdigit())


def _wait_gone(props: dict, node, pids: list[int]) -> None:
    """An unmounted ceph-fuse flushes what it holds and closes its session before it exits,
    and a new one of the same client cannot start while it runs (it holds the pidfile)."""
    if not pids:
        return

    def gone():
        return not set(pids) & set(_fuse_pids(node, props))

    try:
        base.wait_until(
            gone,
            timeout=EXIT_TIMEOUT,
            interval=1,
            what=f"the unmounted ceph-fuse (pid {', '.join(map(str, pids))}) to exit",
        )
    except Timeout as e:
        raise Failure(
            f"{props['node']}: {props['mountpoint']}: {e} It still flushes to the "
            "cluster or serves files opened before a lazy unmount; a new mount of "
            "this client cannot start while it runs. Run `pulumi up` again once it "
            "has exited (fuser -vm shows who holds it)."
        ) from None


def _probe(props: dict, node) -> None:
    """The mount works: a file written through it reads back."""
    probe = shlex.quote(f"{props['mountpoint']}/.cephkvm-probe-{props['node']}")
    script = f'echo ok > {probe} && test "$(cat {probe})" = ok && rm -f {probe}'
    result = node.run(["sh", "-c", script], change=True, check=False, timeout=60)
    if result.exit_code:
        raise Failure(
            f"{props['node']}: {props['mountpoint']} is mounted but a test file "
            f"could not be written and read back: {result.stderr.strip()}"
        )


def _unmount(props: dict, node) -> None:
    mp = props["mountpoint"]
    result = node.run(["umount", mp], change=True, check=False)
    if result.exit_code == 0:
        return
    if not props.get("force_unmount"):
        raise Failure(
            f"{props['node']}: {mp} is busy ({result.stderr.strip()}); stop what "
            "uses it (fuser -vm), or set force_unmount on the mount to detach it "
            "lazily"
        )
    node.run(["umount", "-l", mp], change=True)


class CephFSMount(pulumi.dynamic.Resource, module="cephkvm", name="CephFSMount"):
    client_key: pulumi.Output[str]
    fstab_line: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["client_key"])
        )
        super().__init__(
            CephFSMountProvider(), name, {"client_key": None, "fstab_line": None, **props}, opts
        )
