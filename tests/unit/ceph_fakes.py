"""A fake Ceph world for the unit tier: nodes with files, devices, mounts and daemons, and
one cluster state they share, answering the commands the Ceph providers send (the handler
set CEPH_NODE on fakes.RecordingSession). Tests assert on this state (mkfs counts, running
daemons, fstab text), and can crash a provider before its Nth changing command across all
nodes (world.log.crash_at)."""

from __future__ import annotations

import base64
import json
import re
import shlex
import time

from providers import base
from tests.unit.fakes import Command, FakeNode, Handlers, Journal, connection, put_target, stat_mode

KEY = "AQBFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAA=="


class CephWorld:
    def __init__(self, names=("node1", "node2", "node3"), *, systemd=False):
        self.log = Journal()  # every node's commands, in order
        self.nodes = {n: FakeCephNode(self, n, systemd=systemd) for n in names}
        self.mkfs: dict[str, int] = {}
        self.starts: dict[str, int] = {}
        self.made_from: dict[str, set] = {}  # mon -> members of the monmap it was made from
        self.monmap: set = set()
        self.auth: dict = {}
        self.config: dict = {}
        self.osds: dict = {}
        self.pools: dict = {}
        self.profiles: dict = {}
        self.fs: dict = {}
        self.health_checks: dict = {}
        self.unclean_probes = 0  # `pg dump` answers with a degraded PG this many times
        # With it, `pg dump` answers the states from before the last reweight or out until
        # the OSDs are asked to report (`flush_pg_stats`), as a mgr between two reports does.
        self.stale_until_flush = False
        self.flushed = True
        self.unlisted: set = set()  # pools whose PGs the mgr does not list yet
        self.listed_mgrs: list = []  # stopped mgrs the mgr map still lists (beacon grace)
        self.on_fail = None  # called after `ceph mgr|mds fail`
        self.monmap_fsid = ""  # the fsid monmaptool --create was given
        self.store_fsid: dict = {}  # mon -> the fsid in its store's monmap
        self.next_pool_id = 1
        self.layouts: dict = {}
        self.failed: list = []  # mgr/mds names failed over (`ceph mgr|mds fail`), last last
        self.noout: set = set()  # OSD ids with their own noout flag
        self.modules: set = {"iostat", "nfs", "restful"}  # mgr modules enabled
        self.config_keys: dict = {}
        self.dashboard_users: dict = {}  # user -> password
        self.election_helpers: list = []  # admin sockets, one per helper started

    @property
    def changes(self) -> list[str]:
        return self.log.changes

    def serve(self, monkeypatch) -> "CephWorld":
        """Answer every provider's session (base.session) from this world's nodes."""
        monkeypatch.setattr(
            base, "session", lambda props: self.nodes[props["connection"]["name"]].session()
        )
        return self

    def running(self, kind):
        return sorted(i for node in self.nodes.values() for k, i in node.running if k == kind)

    def preferred(self, kind):
        """Running mgrs/MDS in the order the mons pick an active one: failed ones last."""
        return sorted(
            self.running(kind), key=lambda n: self.failed.index(n) if n in self.failed else -1
        )

    def quorum(self):
        up = [m for m in self.running("mon") if m in self.monmap]
        return sorted(up) if self.monmap and len(up) > len(self.monmap) // 2 else []

    def props_nodes(self):
        return [
            {
                "name": n,
                "address": f"192.0.2.{i + 11}",
                "connection": connection(n, f"192.0.2.{i + 11}"),
            }
            for i, n in enumerate(self.nodes)
        ]


class FakeCephNode(FakeNode):
    HANDLERS = Handlers()

    def __init__(self, world, name, systemd=False):
        super().__init__(name, world.log)
        self.world, self.systemd = world, systemd
        self.files: dict[str, str] = {"/etc/fstab": "# fstab\n"}
        self.modes: dict[str, tuple] = {}
        self.dirs: set = set()
        self.running: set = set()  # (kind, id)
        self.masked: set = set()  # systemd units masked
        self.devices: dict = {}  # path -> {"signature": str|None, "osd": dict|None}
        self.mounts: dict = {}  # mountpoint -> fs type
        self.busy: set = set()
        self.udevadm = True
        self.clock_offset = 0.0
        self.unreachable: set = set()  # node names this node cannot reach
        self.unreadable: set = set()  # files that exist but cannot be read
        self.dead: set = set()  # mountpoints listed in the mount table whose access fails
        self.fenced: dict = {}  # ceph-fuse pid -> admin socket, of clients the cluster evicted
        self.unaware: set = set()  # fenced pids whose client has not seen the new OSD map yet
        self.lingering: dict = {}  # pid -> [asok, lookups it survives (None: forever)]
        self.mount_exits_quietly = False  # `mount` says 0, but ceph-fuse exits at once
        self.domains: set = set()  # libvirt domains running here
        self.mem_available_kib = 8 << 20


CEPH_NODE = FakeCephNode.HANDLERS


# --- the node's own programs ------------------------------------------------------------


@CEPH_NODE.program("ceph")
def _ceph_cli(node, command: Command):
    return _ceph(node, list(command.argv[5:]), command.stdin)  # after --connect-timeout 15


@CEPH_NODE.program("ceph-volume")
def _ceph_volume_cli(node, command: Command):
    return _ceph_volume(node, list(command.argv[3:]))  # after --cluster NAME


@CEPH_NODE.program("true")
def _true(_node, _command):
    return "", 0


@CEPH_NODE.program("date")
def _date(node, _command):
    return f"{time.time() + node.clock_offset:.9f}\n", 0


@CEPH_NODE.program("test")
def _test(node, command: Command):
    flag, path = command.argv[1:3]
    if flag == "-d":
        found = path in node.dirs or path.startswith("/run/systemd") and node.systemd
    elif flag == "-b":
        found = path in node.devices
    elif flag == "-x":
        found = node.udevadm
    elif flag == "-s":
        found = bool(node.files.get(path))
    else:
        found = path in node.files or path in node.dirs
    return "", 0 if found else 1


@CEPH_NODE.program("cat")
def _cat(node, command: Command):
    path = command.argv[-1]
    if path == "/proc/meminfo":
        return f"MemTotal: 16384000 kB\nMemAvailable: {node.mem_available_kib} kB\n", 0
    if path == "/proc/self/mounts":
        return "".join(f"ceph-fuse {mp} {t} rw 0 0\n" for mp, t in node.mounts.items()), 0
    if path in node.unreadable:
        return f"cat: {path}: Permission denied", 1
    return (node.files[path], 0) if path in node.files else ("", 1)


@CEPH_NODE.program("virsh")
def _virsh(node, command: Command):
    if list(command.argv[-2:]) != ["list", "--name"]:
        return None
    return "".join(f"{d}\n" for d in sorted(node.domains)) + "\n", 0


@CEPH_NODE.program("timeout")
def _timeout(node, command: Command):
    return CEPH_NODE.answer(node, command.after(2))


@CEPH_NODE.program("stat")
def _stat(node, command: Command):
    if command.argv[1] == "--":  # does the mount answer
        return (
            ("stat: Transport endpoint is not connected", 1)
            if command.argv[2] in node.dead
            else ("", 0)
        )
    mode = node.modes.get(command.argv[-1])
    return (f"{mode[0]} {mode[1]}\n", 0) if mode else ("", 1)


@CEPH_NODE.program("rm")
def _rm(node, command: Command):
    for path in command.argv[2:]:
        for p in [p for p in node.files if p == path or p.startswith(path + "/")]:
            del node.files[p]
        node.dirs.discard(path)
    return "", 0


@CEPH_NODE.program("install")
def _install(node, command: Command):
    if command.argv[1] == "-d":
        node.dirs.add(command.argv[-1])
    else:
        node.files[command.argv[-1]] = ""
    return "", 0


@CEPH_NODE.program("chown", "chmod")
def _owner_and_mode(_node, _command):
    return "", 0


@CEPH_NODE.program("mkdir")
def _mkdir(node, command: Command):
    node.dirs.add(command.argv[-1])
    return "", 0


@CEPH_NODE.program("rmdir")
def _rmdir(node, command: Command):
    node.dirs.discard(command.argv[-1])
    return "", 0


@CEPH_NODE.program("base64")
def _base64(node, command: Command):
    return base64.b64encode(node.files[command.argv[-1]].encode()).decode(), 0


@CEPH_NODE.program("ceph-mon")
def _mon_mkfs(node, command: Command):
    w, argv = node.world, command.argv
    name = _arg(argv, "-i")
    w.mkfs[name] = w.mkfs.get(name, 0) + 1
    w.store_fsid[name] = w.monmap_fsid
    members = set(node.files[_arg(argv, "--monmap")].split()[1:])
    w.made_from[name] = members
    w.monmap = w.monmap or members  # the first mon made sets the cluster's monmap
    for entity in re.findall(r"\[([^\]]+)\]", node.files[_arg(argv, "--keyring")]):
        w.auth.setdefault(entity, {"key": KEY, "caps": {}})  # mkfs imports the keyring
    node.files[f"/var/lib/ceph/mon/ceph-{name}/store.db"] = "store"
    node.files[f"/var/lib/ceph/mon/ceph-{name}/keyring"] = "[mon.]\n"  # written last
    return "", 0


@CEPH_NODE.script("first-election.log")
def _election_helper(node, command: Command):
    """providers/mon_election.py: the helper detached before a first mon starts."""
    words = shlex.split(command.script)
    node.world.election_helpers.append(words[words.index("-c") + 2])  # the mon's asok
    return "", 0


@CEPH_NODE.program(*(f"/usr/bin/ceph-{kind}" for kind in ("mon", "mgr", "mds", "osd")))
def _start_direct(node, command: Command):
    kind, ident = command.argv[0].rsplit("-", 1)[1], _arg(command.argv, "-i")
    _start(node, kind, ident)
    node.files[f"/run/ceph/ceph-{kind}.{ident}.pid"] = "4242\n"
    return "", 0


@CEPH_NODE.program("systemctl")
def _systemctl(node, command: Command):
    verb, unit = command.argv[1], command.argv[-1]
    kind, ident = unit.split("@")[0].split("-", 1)[1], unit.split("@")[1]
    if verb == "is-active":
        return "", 0 if (kind, ident) in node.running else 3
    if verb in ("mask", "unmask"):
        (node.masked.add if verb == "mask" else node.masked.discard)(unit)
    elif verb == "enable":
        if unit in node.masked:
            return f"Failed to enable unit: Unit file {unit} is masked.", 1
        _start(node, kind, ident)
    else:
        node.running.discard((kind, ident))
    return "", 0


@CEPH_NODE.program("wipefs")
def _wipefs(node, command: Command):
    dev = node.devices[command.argv[-1]]
    if command.argv[1] == "-a":
        dev["signature"] = None
        return "", 0
    sig = dev["signature"]
    return (f"# offset,uuid,label,type\n0x438,,,{sig}\n" if sig else ""), 0


@CEPH_NODE.program("blkid")
def _blkid(node, command: Command):
    return "", 0 if node.devices[command.argv[-1]]["signature"] else 2


@CEPH_NODE.script("bluestore block device")
def _bluestore_label(node, command: Command):
    dev = node.devices[command.argv[-1]]
    return ("yes\n" if dev.get("osd") or dev["signature"] == "ceph_bluestore" else "no\n"), 0


@CEPH_NODE.program("dd")
def _zero(node, command: Command):
    node.devices[command.argv[2].split("=", 1)[1]].update(signature=None, osd=None)
    return "", 0


@CEPH_NODE.program("env")
def _apt_get_install(node, command: Command):
    if "apt-get" not in command.argv:
        return None
    node.udevadm = True
    return "", 0


@CEPH_NODE.program("ceph-fuse")
def _ceph_fuse(node, command: Command):
    node.mounts[command.argv[-1]] = "fuse.ceph-fuse"
    return "", 0


@CEPH_NODE.program("/usr/bin/python3")
def _set_layout(node, command: Command):
    if "ceph.dir.layout.pool" not in command.argv[2]:
        return None
    node.world.layouts[command.argv[3]] = command.argv[4]
    return "", 0


@CEPH_NODE.program("mount")
def _mount(node, command: Command):
    mp = command.argv[-1]
    line = next(
        ln
        for ln in node.files["/etc/fstab"].splitlines()
        if len(ln.split()) > 1 and ln.split()[1] == mp
    )
    holder = any(f"client.{_fstab_id(line)}." in a for a, _ in node.lingering.values())
    if not (node.mount_exits_quietly or holder):  # a live one holds the pidfile
        node.mounts[mp] = "fuse.ceph-fuse" if line.split()[2] == "fuse.ceph" else "ceph"
    return "", 0


@CEPH_NODE.program("kill")
def _kill(node, command: Command):
    for pid in command.argv[2:]:
        node.fenced.pop(int(pid), None)
    return "", 0


@CEPH_NODE.program("tail")
def _client_log(_node, _command):
    return "open: failed to lock pidfile because another process locked it", 0


@CEPH_NODE.program("umount")
def _umount(node, command: Command):
    mp = command.argv[-1]
    if mp in node.busy and "-l" not in command.argv:
        return "umount: target is busy", 32
    node.mounts.pop(mp, None)
    node.dead.discard(mp)
    return "", 0


def _start(node: FakeCephNode, kind: str, ident: str) -> None:
    """A mon made from a monmap without itself joins when a quorum answers."""
    w = node.world
    if kind == "mon" and ident not in w.monmap and w.quorum():
        w.monmap.add(ident)
    node.running.add((kind, ident))
    w.starts[f"{kind}.{ident}"] = w.starts.get(f"{kind}.{ident}", 0) + 1


# --- scripts (sh -c) --------------------------------------------------------------------


@CEPH_NODE.script("umask 077 && cat > ")
def _put(node, command: Command):
    path, mode, owner = put_target(command)
    node.files[path] = command.stdin
    node.modes[path] = (stat_mode(mode), owner)
    return "", 0


@CEPH_NODE.script("--extract-monmap")
def _store_fsid(node, command: Command):
    """The fsid in a mon store's own monmap."""
    fsid = node.world.store_fsid.get(_arg(shlex.split(command.script), "-i"))
    return (f"epoch 1\nfsid {fsid}\n", 0) if fsid else ("", 0)


@CEPH_NODE.script("monmaptool")
def _monmaptool(node, command: Command):
    script = command.script
    node.world.monmap_fsid = re.search(r"--fsid (\S+)", script).group(1)
    members = re.findall(r"--addv (\S+)", script)
    node.files[re.search(r"(\S+)\.new &&", script).group(1)] = " ".join(["MONMAP", *members])
    return "", 0


@CEPH_NODE.script("readlink /proc/$pid/exe")
def _direct_daemon(node, command: Command):
    """services.is_running and stop for a Ceph daemon without systemd."""
    script = command.script
    pid_file = shlex.split(script.split("pid=$(cat ", 1)[1].split(" 2>", 1)[0])[0]
    m = re.match(r"/run/ceph/ceph-(\w+)\.(.+)\.pid", pid_file)
    key = (m.group(1), m.group(2)) if m else None
    if "kill" not in script:
        return "", 0 if key in node.running else 1
    node.running.discard(key)
    node.files.pop(pid_file, None)
    return "", 0


@CEPH_NODE.script("/dev/tcp/")
def _unreachable_peers(node, command: Command):
    return "".join(f"{n}\n" for n in sorted(node.unreachable) if f"echo {n}" in command.script), 0


@CEPH_NODE.script("mktemp /etc/.fstab.cephkvm.")
def _write_fstab(node, command: Command):
    """cephfs_mount._write_fstab: backup, then replace."""
    if "/etc/fstab" in node.files:
        node.files["/etc/fstab.cephkvm.bak"] = node.files["/etc/fstab"]
    node.files["/etc/fstab"] = command.stdin
    return "", 0


@CEPH_NODE.script("! mountpoint -q ")
def _unmount_osd_data(_node, _command):
    """ceph_osd: an OSD's data directory is unmounted before it is removed (never mounted
    here)."""
    return "", 0


@CEPH_NODE.script("lsblk -nro MOUNTPOINT")
def _device_mountpoints(node, command: Command):
    dev = shlex.split(command.script.split("readlink -f ", 1)[1].split(")", 1)[0])[0]
    return node.devices.get(dev, {}).get("busy", ""), 0


@CEPH_NODE.script(".asok")
def _fuse_sockets(node, command: Command):
    """cephfs_mount._each_live_asok: the live pids of a client, or their `status`."""
    script = command.script
    prefix = shlex.split(script.split(";", 1)[0][len("pre=") :])[0]
    if "status" in script:
        # Client::dump_status writes the address in its legacy form, without "v1:".
        return "".join(
            f'{pid} {{"blocklisted": {json.dumps(pid not in node.unaware)}, '
            f'"addr_str": "{node.name}:0/{pid}"}}\n'
            for pid, a in node.fenced.items()
            if a.startswith(prefix + ".")
        ), 0
    live = [
        pid
        for pid, a in {**node.fenced, **{p: a for p, (a, _) in node.lingering.items()}}.items()
        if a.startswith(prefix + ".")
    ]
    for pid in list(node.lingering):
        left = node.lingering[pid][1]
        if left is not None:
            node.lingering[pid][1] = left - 1
            if left <= 0:
                del node.lingering[pid]
    return "".join(f"{pid}\n" for pid in live), 0


@CEPH_NODE.script("echo ok > ")
def _probe(node, command: Command):
    mp = shlex.split(command.script)[3].rsplit("/", 1)[0]
    return ("", 0) if mp in node.mounts else ("not mounted", 1)


def _fstab_id(line: str) -> str:
    return next(
        (
            o.split("=", 1)[1]
            for o in line.split()[3].split(",")
            if o.startswith(("ceph.id=", "name="))
        ),
        "",
    )


def _arg(args, flag, default=None):
    return args[args.index(flag) + 1] if flag in args else default


def _ceph(node: FakeCephNode, args: list, stdin):
    w = node.world
    if args[-2:] == ["-f", "json"]:
        args = args[:-2]
    if args[0] == "daemon":  # the admin socket answers without a quorum
        kind, ident = args[1].split(".", 1)
        if (kind, ident) not in node.running:
            return "admin_socket: exception getting command descriptions", 22
        members = w.monmap if ident in w.monmap else w.made_from.get(ident, set())
        return json.dumps(
            {
                "name": ident,
                "state": "leader" if ident in w.quorum() else "probing",
                "monmap": {"mons": [{"name": m} for m in sorted(members)]},
            }
        ), 0
    quorum = w.quorum()
    if not quorum:
        return "error connecting to the cluster", 1
    head = " ".join(args[:3])
    if args[0] == "quorum_status":
        return json.dumps({"quorum_names": quorum}), 0
    if args[:2] == ["mon", "dump"]:
        return json.dumps({"mons": [{"name": m} for m in sorted(w.monmap)]}), 0
    if args[:2] == ["mon", "getmap"]:
        node.files[_arg(args, "-o")] = " ".join(["MONMAP", *sorted(w.monmap)])
        return "", 0
    if args[:2] == ["mon", "remove"]:
        if w.monmap == {args[2]}:
            return f"Error EINVAL: refusing removal of last monitor {args[2]}", 22
        w.monmap.discard(args[2])
        return "", 0
    if args[:2] == ["config", "dump"]:
        return json.dumps(
            [
                {"section": s, "name": k, "value": v}
                for s, o in w.config.items()
                for k, v in o.items()
            ]
        ), 0
    if args[:2] == ["config", "set"]:
        w.config.setdefault(args[2], {})[args[3]] = args[4]
        return "", 0
    if args[:2] == ["config", "rm"]:
        w.config.get(args[2], {}).pop(args[3], None)
        return "", 0
    if args[:2] == ["auth", "get-or-create"]:
        w.auth.setdefault(args[2], {"key": KEY, "caps": {}})
        node.files[_arg(args, "-o")] = f"[{args[2]}]\n\tkey = {KEY}\n"
        return "", 0
    if args[:2] == ["auth", "get"]:
        if args[2] not in w.auth:
            return "ENOENT", 2
        if "-o" in args:
            node.files[_arg(args, "-o")] = f"[{args[2]}]\n\tkey = {KEY}\n"
            return "", 0
        return json.dumps([{"entity": args[2], **w.auth[args[2]]}]), 0
    if args[:2] == ["auth", "rm"]:
        w.auth.pop(args[2], None)
        return "", 0
    if args[:2] == ["auth", "caps"]:
        w.auth[args[2]]["caps"] = dict(zip(args[3::2], args[4::2]))
        return "", 0
    if args[:2] == ["fs", "authorize"]:
        w.auth[args[3]] = {
            "key": KEY,
            "caps": {
                "mds": f"allow {args[5]} fsname={args[2]}",
                "mon": f"allow r fsname={args[2]}",
                "osd": f"allow rw tag cephfs data={args[2]}",
            },
        }
        return json.dumps([{"entity": args[3], **w.auth[args[3]]}]), 0
    if args[:2] == ["mgr", "dump"]:
        mgrs = w.preferred("mgr")
        return json.dumps(
            {
                "active_name": mgrs[0] if mgrs else "",
                "available": bool(mgrs),
                "standbys": [{"name": m} for m in mgrs[1:] + w.listed_mgrs if m not in mgrs[:1]],
            }
        ), 0
    if args[:2] == ["fs", "dump"]:
        mds = w.preferred("mds")
        fss = []
        for name, fs in w.fs.items():
            info = {"gid_1": {"name": mds.pop(0), "state": "up:active"}} if mds else {}
            fss.append(
                {
                    "mdsmap": {
                        "fs_name": name,
                        "max_mds": fs["max_mds"],
                        "standby_count_wanted": fs["standby"],
                        "info": info,
                        "metadata_pool": w.pools[fs["meta"]]["pool_id"],
                        "data_pools": [w.pools[p]["pool_id"] for p in fs["data"]],
                    }
                }
            )
        return json.dumps(
            {"standbys": [{"name": m, "state": "up:standby"} for m in mds], "filesystems": fss}
        ), 0
    if args[:2] == ["health", "detail"]:
        status = "HEALTH_WARN" if w.health_checks else "HEALTH_OK"
        return json.dumps(
            {
                "status": status,
                "checks": {k: {"summary": {"message": v}} for k, v in w.health_checks.items()},
            }
        ), 0
    if args[0] == "version":
        return json.dumps({"version": "ceph version 16.2.15 (618f44) pacific (stable)"}), 0
    if args[:2] == ["osd", "tree"]:
        hosts: dict = {}
        for i, o in w.osds.items():
            hosts.setdefault(o["host"], []).append(i)
        nodes = [{"type": "host", "name": h, "children": c} for h, c in hosts.items()]
        nodes += [
            {
                "type": "osd",
                "id": i,
                "status": "up" if ("osd", str(i)) in w.nodes[o["host"]].running else "down",
                "reweight": 1.0 if o["in"] else 0.0,
            }
            for i, o in w.osds.items()
        ]
        return json.dumps({"nodes": nodes, "stray": []}), 0
    if args[:2] == ["osd", "dump"]:  # the state words as Ceph 16 prints them
        osds = [
            {
                "osd": i,
                "state": ["exists"]
                + (["up"] if ("osd", str(i)) in w.nodes[o["host"]].running else [])
                + (["noout"] if i in w.noout else []),
            }
            for i, o in w.osds.items()
        ]
        return json.dumps({"osds": osds}), 0
    if args[:3] == ["osd", "blocklist", "ls"]:
        return "".join(
            f"{n.name}:0/{pid} 2026-12-02T15:00:00.000000+0000\n"
            for n in w.nodes.values()
            for pid in n.fenced
        ), 0
    if args[:2] == ["osd", "in"]:
        w.osds[int(args[2])]["in"] = True
        return "", 0
    if args[:2] == ["osd", "out"] or args[:3] == ["osd", "crush", "reweight"]:
        w.flushed = False
    if args[:2] == ["osd", "out"]:
        w.osds[int(args[2])]["in"] = False
        return "", 0
    if args[:3] == ["osd", "crush", "reweight"]:
        w.osds[int(args[3].split(".")[1])]["weight"] = float(args[4])
        return "", 0
    if args[:2] in (["mgr", "fail"], ["mds", "fail"]):
        w.failed = [n for n in w.failed if n != args[2]] + [args[2]]
        if w.on_fail:  # what else happens meanwhile (a destroy removing the standbys)
            w.on_fail()
        return "", 0
    if args[:2] == ["mon", "ok-to-stop"]:
        left = [m for m in quorum if m not in args[2:]]
        return (
            ("", 0)
            if len(left) > len(w.monmap) // 2
            else (
                f"Error EBUSY: stopping {' '.join(args[2:])} would leave {left}, not a quorum",
                16,
            )
        )
    if args[:2] == ["osd", "ok-to-stop"]:
        hosts = {
            o["host"]
            for i, o in w.osds.items()
            if str(i) not in args[2:] and ("osd", str(i)) in w.nodes[o["host"]].running
        }
        need = max([p["min_size"] for p in w.pools.values()] or [1])
        return (
            ("", 0)
            if len(hosts) >= need
            else (f"Error EBUSY: {len(w.pools)} pools would become inactive", 16)
        )
    if args[:2] in (["osd", "add-noout"], ["osd", "rm-noout"]):
        (w.noout.add if args[1] == "add-noout" else w.noout.discard)(int(args[2][4:]))
        return "", 0
    if args[:2] == ["osd", "safe-to-destroy"]:
        return "", 0
    if args[:2] == ["osd", "purge"]:
        w.osds.pop(int(args[2]), None)
        return "", 0
    if head == "osd pool ls":
        return json.dumps([{"pool_name": n, **p} for n, p in w.pools.items()]), 0
    if head == "osd pool create":
        flags = [a for a in args if a.startswith("--")]
        args = [a for a in args if a not in flags]
        name, pg = args[3], int(args[4])
        w.pools[name] = {
            "pool_id": w.next_pool_id,
            "type": 1 if args[6] == "replicated" else 3,
            "size": 3,
            "min_size": 2,
            "pg_num": pg,
            "pg_num_target": pg,
            "pg_autoscale_mode": "on",
            "application_metadata": {},
            "reported": False,  # the OSDs have not reported its PGs to the mgr yet
            "erasure_code_profile": args[7] if len(args) > 7 else "",
            "flags_names": "hashpspool",
            "quota_max_bytes": 0,
            "quota_max_objects": 0,
        }
        for flag in flags:
            if flag.startswith("--autoscale-mode="):
                w.pools[name]["pg_autoscale_mode"] = flag.split("=", 1)[1]
        if len(args) > 7:
            prof = w.profiles[args[7]]
            w.pools[name].update(size=prof["k"] + prof["m"], min_size=prof["k"] + 1)
        w.next_pool_id += 1
        return "", 0
    if head == "osd pool set":
        p, field, value = w.pools[args[3]], args[4], args[5]
        if field == "allow_ec_overwrites":
            p["flags_names"] += ",ec_overwrites"
        elif field == "pg_autoscale_mode":
            p[field] = value
        else:
            p[field] = int(value)
            if field == "pg_num":
                p["pg_num_target"] = int(value)
        return "", 0
    if head == "osd pool rename":  # filesystems refer to pools by id: they follow
        old, new = args[3], args[4]
        w.pools[new] = w.pools.pop(old)
        for fs in w.fs.values():
            fs["meta"] = new if fs["meta"] == old else fs["meta"]
            fs["data"] = [new if p == old else p for p in fs["data"]]
        return "", 0
    if head == "osd pool application":
        apps = w.pools[args[4]]["application_metadata"]
        if args[3] == "enable":
            apps[args[5]] = {}
        else:
            apps.pop(args[5], None)
        return "", 0
    if head == "osd pool set-quota":
        w.pools[args[3]][f"quota_{args[4]}"] = int(args[5])
        return "", 0
    if head == "osd pool rm":
        if w.config.get("mon", {}).get("mon_allow_pool_delete") != "true":
            return "EPERM pool deletion is disabled", 1
        w.pools.pop(args[3])
        return "", 0
    if head == "osd erasure-code-profile get":
        return ("", 0) if args[3] in w.profiles else ("ENOENT", 2)
    if head == "osd erasure-code-profile set":
        w.profiles[args[3]] = {k: int(v) for k, v in (a.split("=") for a in args[4:6])}
        return "", 0
    if head == "osd erasure-code-profile rm":
        w.profiles.pop(args[3], None)
        return "", 0
    if args[:2] == ["df", "detail"]:
        return json.dumps(
            {
                "pools": [
                    {"name": n, "stats": {"objects": p.get("objects", 0)}}
                    for n, p in w.pools.items()
                ]
            }
        ), 0
    if args[:2] == ["pg", "dump"] and w.stale_until_flush and not w.flushed:
        return json.dumps({"pg_stats": [{"state": "active+clean"}] * 4}), 0
    if args[:2] == ["pg", "dump"]:
        dirty = w.unclean_probes > 0
        w.unclean_probes -= 1
        states = ["active+undersized+degraded"] if dirty else []
        return json.dumps({"pg_stats": [{"state": s} for s in states + ["active+clean"] * 4]}), 0
    if args[:3] == ["tell", "osd.*", "flush_pg_stats"]:
        w.flushed = True
        for p in w.pools.values():
            p["reported"] = True
        return "".join(f"osd.{i}: 1\n" for i in w.osds), 0
    if args[:2] == ["pg", "ls-by-pool"]:  # clean, once the OSDs have reported it
        state = "active+clean" if w.pools[args[2]].get("reported", True) else "unknown"
        listed = 0 if args[2] in w.unlisted else 4
        return json.dumps({"pg_stats": [{"state": state}] * listed}), 0
    if args[:2] == ["fs", "new"]:
        w.fs[args[2]] = {"meta": args[3], "data": [args[4]], "max_mds": 1, "standby": 0}
        return "", 0
    if args[:2] == ["fs", "add_data_pool"]:
        w.fs[args[2]]["data"].append(args[3])
        return "", 0
    if args[:2] == ["fs", "rm_data_pool"]:
        w.fs[args[2]]["data"].remove(args[3])
        return "", 0
    if args[:2] == ["fs", "set"]:
        w.fs[args[2]]["max_mds" if args[3] == "max_mds" else "standby"] = int(args[4])
        return "", 0
    if args[:2] in (["fs", "fail"], ["fs", "rm"]):
        if args[1] == "rm":
            w.fs.pop(args[2], None)
        return "", 0
    return _mgr_modules(w, args, stdin)


def _mgr_modules(w: CephWorld, args: list, stdin):
    """The mgr's modules and the dashboard's commands, as Pacific answers them."""
    if args[:3] == ["mgr", "module", "ls"]:
        return json.dumps(
            {"enabled_modules": sorted(w.modules), "always_on_modules": ["status"]}
        ), 0
    if args[:3] in (["mgr", "module", "enable"], ["mgr", "module", "disable"]):
        (w.modules.add if args[2] == "enable" else w.modules.discard)(args[3])
        return "", 0
    if args[:2] == ["mgr", "services"]:
        mgrs, opts = w.preferred("mgr"), w.config.get("mgr", {})
        if "dashboard" not in w.modules or not mgrs:
            return "{}", 0
        addr = opts.get(f"mgr/dashboard/{mgrs[0]}/server_addr", mgrs[0])
        port = opts.get("mgr/dashboard/ssl_server_port", "8443")
        return json.dumps({"dashboard": f"https://{addr}:{port}/"}), 0
    if args[:2] == ["config-key", "exists"]:
        return ("", 0) if args[2] in w.config_keys else ("", 2)
    if args[0] != "dashboard":
        return None
    if "dashboard" not in w.modules:
        return "Error ENOTSUP: Module 'dashboard' is not enabled/loaded", 95
    sub, user = args[1], (args[2] if len(args) > 2 else "")
    if sub == "create-self-signed-cert":
        w.config_keys["mgr/dashboard/crt"] = "CERT"
        return "Self-signed certificate created", 0
    if sub in ("ac-user-show", "ac-user-delete", "ac-user-set-password") and (
        user not in w.dashboard_users
    ):
        return f"Error ENOENT: User '{user}' does not exist", 2
    if sub in ("ac-user-create", "ac-user-set-password"):
        w.dashboard_users[user] = stdin
    elif sub == "ac-user-delete":
        del w.dashboard_users[user]
    return json.dumps({"username": user}), 0


@CEPH_NODE.program("python3")
def _dashboard_login(node, command: Command):
    """providers/web_login.py on the dashboard: 201 for the user's password, else 400."""
    w, user = node.world, command.argv[-1]
    if "dashboard" not in w.modules:
        return "0\n", 0
    return ("201" if w.dashboard_users.get(user) == command.stdin else "400") + "\n", 0


def _ceph_volume(node: FakeCephNode, args: list):
    w = node.world
    method, action = args[0], args[1]
    dev = args[-1] if action != "list" else args[2]
    if action == "list":
        if dev not in node.devices or node.devices[dev].get("list_fails"):
            return "no such device", 1
        osd = node.devices[dev].get("osd")
        if method == "raw":
            return json.dumps({osd["osd_uuid"]: {**osd, "device": dev}} if osd else {}), 0
        return json.dumps(
            {
                str(osd["osd_id"]): [
                    {
                        "tags": {
                            "ceph.osd_fsid": osd["osd_uuid"],
                            "ceph.cluster_fsid": osd["ceph_fsid"],
                        }
                    }
                ]
            }
            if osd
            else {}
        ), 0
    if action in ("prepare", "create"):
        dev = _arg(args, "--data")
        osd_id = max(w.osds, default=-1) + 1
        fsid = node.files.get("/etc/ceph/ceph.conf", "").split("fsid = ")[1].split()[0]
        node.devices[dev]["osd"] = {
            "osd_id": osd_id,
            "osd_uuid": f"uuid-{osd_id}",
            "ceph_fsid": fsid,
        }
        w.osds[osd_id] = {"host": node.name, "up": False, "in": True}
        if action == "create":  # lvm create also starts the systemd unit
            node.running.add(("osd", str(osd_id)))
            w.osds[osd_id]["up"] = True
        return "", 0
    if action == "activate":
        osd = node.devices[_arg(args, "--device")]["osd"]
        node.files[f"/var/lib/ceph/osd/ceph-{osd['osd_id']}/keyring"] = "k"
        return "", 0
    return None


# --- the Ceph core as the component builds it -------------------------------------------


def cluster_props(world: CephWorld, **kw) -> dict:
    from providers.ceph_cluster import CephClusterProvider

    p = {
        "public_network": "192.0.2.0/24",
        "nodes": world.props_nodes(),
        "mons": list(world.nodes),
        "owner": "cephkvm/unit",
        **kw,
    }
    result = CephClusterProvider().check({}, p)
    assert not result.failures, result.failures
    return result.inputs


def _access(world: CephWorld, name: str) -> dict:
    return next(
        {"connection": n["connection"], "address": n["address"]}
        for n in world.props_nodes()
        if n["name"] == name
    )


def mon_props(world: CephWorld, fsid: str, name: str, **kw) -> dict:
    from providers.ceph_mon import CephMonProvider

    result = CephMonProvider().check(
        {}, {"fsid": fsid, "node": name, **_access(world, name), "timeout": 2, **kw}
    )
    assert not result.failures, result.failures
    return result.inputs


def config_props(world: CephWorld, fsid: str, **kw) -> dict:
    from providers.ceph_config import CephConfigProvider

    result = CephConfigProvider().check(
        {},
        {
            "fsid": fsid,
            "admin": [{"connection": n["connection"]} for n in world.props_nodes()],
            "mons": list(world.nodes),
            "timeout": 2,
            **kw,
        },
    )
    assert not result.failures, result.failures
    return result.inputs


def daemon_props(world: CephWorld, fsid: str, name: str, **kw) -> dict:
    from providers import ceph_daemon

    result = ceph_daemon.DaemonProvider().check(
        {},
        {
            "fsid": fsid,
            "node": name,
            "connection": _access(world, name)["connection"],
            "timeout": 2,
            **kw,
        },
    )
    assert not result.failures, result.failures
    return result.inputs


def conf_props(world: CephWorld, outs: dict, name: str, admin=True) -> dict:
    from providers.ceph_conf import CephConfProvider

    result = CephConfProvider().check(
        {},
        {
            "node": name,
            "connection": _access(world, name)["connection"],
            "conf": outs["conf"],
            "admin": admin,
            **({"admin_key": outs["admin_key"]} if admin else {}),
        },
    )
    assert not result.failures, result.failures
    return result.inputs


def bring_up(world: CephWorld, options=None, **cluster) -> dict:
    """Cluster, every mon, the config, a mgr and an MDS on every node, in the component's
    order; returns the cluster's outputs."""
    from providers.ceph_cluster import CephClusterProvider
    from providers.ceph_config import CephConfigProvider
    from providers.ceph_mds import CephMdsProvider
    from providers.ceph_mgr import CephMgrProvider
    from providers.ceph_mon import CephMonProvider
    from providers.ceph_conf import CephConfProvider

    outs = CephClusterProvider().create(cluster_props(world, **cluster)).outs
    fsid = outs["fsid"]
    for name in world.nodes:
        CephConfProvider().create(conf_props(world, outs, name))
    for name in cluster.get("mons", world.nodes):
        CephMonProvider().create(mon_props(world, fsid, name))
    CephConfigProvider().create(
        config_props(
            world, fsid, options=options or {}, mons=list(cluster.get("mons", world.nodes))
        )
    )
    for name in world.nodes:
        CephMgrProvider().create(daemon_props(world, fsid, name))
        CephMdsProvider().create(daemon_props(world, fsid, name))
    return outs
