"""CephCluster: fsid, keys, mons, mgrs, MDS daemons, ceph.conf and the admin keyring on
every node. Bootstraps the way Ceph's manual deployment describes it (keys, `ceph-mon
--mkfs`, then mgr and MDS keys from the running cluster), no ceph-deploy, no cephadm.

Crash safety: the fsid and the bootstrap keyring are written to the first mon before any
mon exists and are reused from there; a mon is made with mkfs only while its `done` marker
is missing; a daemon is started only when its pid file (or unit) says it is not running.
"""
from __future__ import annotations

import base64
import shlex
import time
import uuid
from typing import Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, ReadResult, \
    ResourceProvider, UpdateResult

from providers import base, ceph_facts, services
from providers.ceph_cli import ceph, ceph_json, gen_key, keyring, keyring_keys, \
    node_session, put_if_changed

# --- input schema -----------------------------------------------------------------------
# cluster_name     str        "ceph"
# pin_fsid         str?       use this fsid instead of generating one
# public_network   str        CIDR the mons and clients use
# cluster_network  str?       CIDR for OSD replication
# nodes            list[dict] {name, address, connection, ssh_private_key?}: every node
#                             gets ceph.conf + the admin keyring
# mons, mgrs, mdss list[str]  node names running each daemon (daemon id = node name)
# options          dict       {section: {option: value}} applied with `ceph config set`
# allow_data_loss  bool       delete is refused unless true
# health_timeout   int        seconds to wait for quorum, mgr and MDS daemons
# outputs: fsid, mon_addresses ([v2:..,v1:..] per mon), mon_hosts (ip:6789), admin_key
#          (secret), version, health, health_checks

REPLACES = ("cluster_name", "pin_fsid")
UPDATES = ("public_network", "cluster_network", "nodes", "mons", "mgrs", "mdss", "options",
           "allow_data_loss", "health_timeout")
OUTPUTS = ("fsid", "mon_addresses", "mon_hosts", "admin_key", "version", "health",
           "health_checks")

# Checks a bare cluster may show until OSDs, pools and filesystems exist: they belong to
# the resources that come later, which wait for their own part of the health.
LATER_CHECKS = ("OSD_", "PG_", "POOL_", "TOO_FEW_", "MDS_", "FS_", "OBJECT_", "SLOW_OPS")
# Options every cluster gets: Pacific warns until insecure global_id reclaim is turned off.
BASE_OPTIONS = {"mon": {"auth_allow_insecure_global_id_reclaim": "false"}}
MAX_CLOCK_SKEW = 0.05  # seconds: Ceph's mon_clock_drift_allowed
ADMIN_CAPS = {"mon": "allow *", "osd": "allow *", "mds": "allow *", "mgr": "allow *"}
DAEMON_CAPS = {
    "mgr": ["mon", "allow profile mgr", "osd", "allow *", "mds", "allow *"],
    "mds": ["mon", "profile mds", "mgr", "profile mds", "mds", "allow *", "osd", "allow *"],
}


class CephClusterProvider(ResourceProvider):
    def check(self, _olds, news):
        news = base.normalize(news)
        failures = []
        names = {n.get("name") for n in news.get("nodes") or []}
        for i, node in enumerate(news.get("nodes") or []):
            failures += base.check_connection(node.get("connection"), f"nodes[{i}].connection")
        for field in ("mons", "mgrs", "mdss"):
            for name in news.get(field) or []:
                if name not in names:
                    failures.append(CheckFailure(field, f"{name!r} is not one of the nodes "
                                                        f"({', '.join(sorted(names))})"))
        if not news.get("mons"):
            failures.append(CheckFailure("mons", "at least one node needs the mon role"))
        if not news.get("public_network"):
            failures.append(CheckFailure("public_network", "set the CIDR mons listen on"))
        news.setdefault("cluster_name", "ceph")
        news.setdefault("options", {})
        news.setdefault("health_timeout", 120)
        return CheckResult(news, failures)

    def diff(self, _id, olds, news):
        return base.diff_result(olds, news, replaces=REPLACES, updates=UPDATES)

    def create(self, props):
        props = base.normalize(props)
        _preflight(props, _sessions(props))
        outs = _converge(props, removed={})
        return CreateResult(outs["fsid"], {**props, **outs})

    def read(self, id_, props):
        props = base.normalize(props)
        first = _sessions(props)[props["mons"][0]]
        fsid = (first.get(_fsid_path(props)) or "").strip()
        if not fsid:
            return ReadResult("", {})
        return ReadResult(id_, {**props, **_observe(props, fsid)})

    def update(self, _id, olds, news):
        olds, news = base.normalize(olds), base.normalize(news)
        removed = {kind: [n for n in olds.get(kind, []) if n not in news[kind]]
                   for kind in ("mons", "mgrs", "mdss")}
        return UpdateResult({**news, **_converge(news, removed, olds)})

    def delete(self, _id, props):
        props = base.normalize(props)
        if not props.get("allow_data_loss"):
            raise Exception(
                f"refusing to delete Ceph cluster {props.get('fsid')}: that destroys every "
                "pool and file in it. To really delete it, set cephkvm:ceph.allow_data_loss "
                "to true, run `pulumi up`, then destroy again.")
        for name, node in _sessions(props).items():
            _wipe_node(props, name, node)


# --- converging -------------------------------------------------------------------------


def _sessions(props: dict) -> dict:
    return {n["name"]: node_session(n) for n in props["nodes"]}


def _address(props: dict, name: str) -> str:
    return next(n["address"] for n in props["nodes"] if n["name"] == name)


def _fsid_path(props: dict) -> str:
    return f"/var/lib/ceph/tmp/{props['cluster_name']}.fsid"


def _bootstrap_keyring_path(props: dict) -> str:
    return f"/var/lib/ceph/tmp/{props['cluster_name']}.bootstrap.keyring"


def _conf_path(props: dict) -> str:
    return f"/etc/ceph/{props['cluster_name']}.conf"


def _admin_keyring_path(props: dict) -> str:
    return f"/etc/ceph/{props['cluster_name']}.client.admin.keyring"


def _preflight(props: dict, nodes: dict) -> None:
    """Before the first change on any node: the clocks agree (mons lose quorum over skew)
    and every node reaches every other at the address its mon will use."""
    problems = []
    clocks = {}
    for name, node in nodes.items():
        before = time.time()
        remote = float(node.run(["date", "+%s.%N"]).stdout.strip())
        after = time.time()
        clocks[name] = (remote - (before + after) / 2, (after - before) / 2)
    for a, (off_a, err_a) in clocks.items():
        for b, (off_b, err_b) in clocks.items():
            skew = abs(off_a - off_b) - err_a - err_b
            if a < b and skew > MAX_CLOCK_SKEW:
                problems.append(f"clocks of {a} and {b} differ by {skew:.2f}s at least; "
                                "run NTP (chrony) on every node")
    for n in props["nodes"]:
        others = [(o["name"], o["address"], o["connection"].get("port", 22))
                  for o in props["nodes"] if o["name"] != n["name"]]
        script = "; ".join(
            f"timeout 3 bash -c {shlex.quote(f'</dev/tcp/{addr}/{port}')} 2>/dev/null || "
            f"echo {shlex.quote(name)}" for name, addr, port in others)
        unreachable = nodes[n["name"]].run(["sh", "-c", script or "true"]).stdout.split()
        for other in unreachable:
            problems.append(f"{n['name']} cannot reach {other} at "
                            f"{_address(props, other)}; fix the network or the node address")
    if problems:
        raise Exception("Ceph preflight failed, nothing was changed:\n  " +
                        "\n  ".join(problems))


def _converge(props: dict, removed: dict, olds: dict | None = None) -> dict:
    nodes = _sessions(props)
    systemd = {name: services.has_systemd(node) for name, node in nodes.items()}
    fsid, keys = _identity(props, nodes)
    for name, node in nodes.items():
        put_if_changed(node, _conf_path(props), render_conf(props, fsid))
        put_if_changed(node, _admin_keyring_path(props),
                       keyring("client.admin", keys["client.admin"], ADMIN_CAPS),
                       mode="0600", secret=True)
    admin = nodes[props["mons"][0]]
    _mons(props, nodes, systemd)
    base.wait_until(lambda: set(props["mons"]) <= set(_quorum(props, admin)),
             timeout=props["health_timeout"], what=f"mons {', '.join(props['mons'])} in quorum",
             report=lambda: f"In quorum: {_quorum(props, admin)}")
    _remove_mons(props, nodes, systemd, removed.get("mons", []), olds)
    _options(props, admin, (olds or {}).get("options", {}))
    for kind in ("mgr", "mds"):
        for name in props[kind + "s"]:
            _daemon(props, kind, name, nodes[name], admin, systemd[name])
        for name in removed.get(kind + "s", []):
            if name in nodes:
                _remove_daemon(props, kind, name, nodes[name], admin, systemd[name])
    _wait_daemons(props, admin)
    return {**_observe(props, fsid), "admin_key": keys["client.admin"]}


def _identity(props: dict, nodes: dict) -> tuple[str, dict]:
    """The cluster's fsid and bootstrap keys: reused from any mon node that has them
    (a crashed or earlier run), created on the first mon only when none has them."""
    fsid, keys = "", {}
    for name in props["mons"]:
        found = (nodes[name].get(_fsid_path(props)) or "").strip()
        if found:
            fsid = found
            keys = keyring_keys(nodes[name].get(_bootstrap_keyring_path(props)))
            break
    if fsid and props.get("pin_fsid") and fsid != props["pin_fsid"]:
        raise Exception(f"the mons already hold cluster {fsid}, not the pinned fsid "
                        f"{props['pin_fsid']}; remove pin_fsid or clean the nodes")
    fsid = fsid or props.get("pin_fsid") or str(uuid.uuid4())
    if set(keys) != {"mon.", "client.admin", "client.bootstrap-osd"}:
        keys = {"mon.": gen_key(), "client.admin": gen_key(), "client.bootstrap-osd": gen_key()}
    text = (keyring("mon.", keys["mon."], {"mon": "allow *"})
            + keyring("client.admin", keys["client.admin"], ADMIN_CAPS)
            + keyring("client.bootstrap-osd", keys["client.bootstrap-osd"],
                      {"mon": "profile bootstrap-osd", "mgr": "allow r"}))
    # fsid before keys: a keyring without an fsid beside it is regenerated, never used.
    for name in props["mons"]:
        put_if_changed(nodes[name], _fsid_path(props), fsid + "\n", owner="ceph:ceph")
        put_if_changed(nodes[name], _bootstrap_keyring_path(props), text, mode="0600",
                       owner="ceph:ceph", secret=True)
    return fsid, keys


def render_conf(props: dict, fsid: str) -> str:
    mons = props["mons"]
    lines = [
        "# Written by cephkvm (CephCluster); changes here are overwritten.",
        "[global]",
        f"fsid = {fsid}",
        f"mon_initial_members = {', '.join(mons)}",
        f"mon_host = {' '.join(mon_addrv(_address(props, m)) for m in mons)}",
        f"public_network = {props['public_network']}",
    ]
    if props.get("cluster_network"):
        lines.append(f"cluster_network = {props['cluster_network']}")
    lines += [
        "auth_cluster_required = cephx",
        "auth_service_required = cephx",
        "auth_client_required = cephx",
        # Ceph writes no pid file by default; the service manager finds daemons by it.
        "pid_file = /run/ceph/$cluster-$name.pid",
    ]
    return "\n".join(lines) + "\n"


def mon_addrv(address: str) -> str:
    return f"[v2:{address}:3300,v1:{address}:6789]"


def _mon_dir(props: dict, name: str) -> str:
    return f"/var/lib/ceph/mon/{props['cluster_name']}-{name}"


def _mons(props: dict, nodes: dict, systemd: dict) -> None:
    """mkfs each mon that has not been made, then start every mon that is not running.
    While no quorum answers, mons are made from one bootstrap monmap kept on the first mon
    (the same bytes everywhere: mons made from mon_host alone trip Pacific's
    ConnectionTracker rank assert); a mon added to a running cluster takes its monmap."""
    made = {m: _mon_made(props, m, nodes[m]) for m in props["mons"]}
    join = any(made.values()) and _reachable(props, nodes)
    for name in props["mons"]:
        node = nodes[name]
        if not made[name]:
            if join:
                monmap = f"/var/lib/ceph/tmp/{props['cluster_name']}-{name}.monmap"
                ceph(node, props["cluster_name"], "mon", "getmap", "-o", monmap, change=True)
            else:
                monmap = _bootstrap_monmap(props, nodes, node)
            _mkfs_mon(props, name, node, monmap)
        services.ensure_running(node, _daemon_of(props, "mon", name), systemd[name])


def _mon_made(props: dict, name: str, node) -> bool:
    """mkfs completed: `done` is our marker, and the keyring in the data dir is the last
    thing `ceph-mon --mkfs` writes, so a crash between the two is not a reason to mkfs again."""
    data = _mon_dir(props, name)
    if node.ok(["test", "-e", data + "/done"]):
        return True
    if node.ok(["test", "-s", data + "/keyring"]):
        _mark_done(node, data)
        return True
    return False


def _mark_done(node, data: str) -> None:
    node.run(["install", "-o", "ceph", "-g", "ceph", "-m", "0644", "/dev/null",
              data + "/done"], change=True)


def _bootstrap_monmap(props: dict, nodes: dict, node) -> str:
    """The initial monmap: created once on the first mon, copied byte for byte."""
    path = f"/var/lib/ceph/tmp/{props['cluster_name']}.monmap"
    first = nodes[props["mons"][0]]
    if not first.ok(["test", "-s", path]):
        fsid = first.get(_fsid_path(props)).strip()
        argv = ["monmaptool", "--create", "--fsid", fsid]
        for mon in props["mons"]:
            argv += ["--addv", mon, mon_addrv(_address(props, mon))]
        first.run(["sh", "-c", f"{shlex.join(argv)} {shlex.quote(path)}.new && "
                                f"mv {shlex.quote(path)}.new {shlex.quote(path)}"], change=True)
    if node is not first and not node.ok(["test", "-s", path]):
        data = first.run(["base64", "-w0", path]).stdout  # binary: carried as base64
        node.put(path, base64.b64decode(data), mode="0644")
    return path


def _reachable(props: dict, nodes: dict) -> bool:
    """True when a quorum answers (then a new mon must take the cluster's monmap)."""
    result = ceph(nodes[props["mons"][0]], props["cluster_name"], "quorum_status",
                  check=False, timeout=30)
    return result.exit_code == 0


def _mkfs_mon(props: dict, name: str, node, monmap: str) -> None:
    c, data = props["cluster_name"], _mon_dir(props, name)
    # A store without `done` is from an interrupted mkfs: it holds nothing yet.
    node.run(["rm", "-rf", data], change=True)
    node.run(["install", "-d", "-o", "ceph", "-g", "ceph", "-m", "0750", data], change=True)
    node.run(["chown", "ceph:ceph", monmap], change=True)
    node.run(["ceph-mon", "--cluster", c, "--mkfs", "-i", name, "--monmap", monmap,
              "--keyring", _bootstrap_keyring_path(props), "--setuser", "ceph", "--setgroup",
              "ceph"], change=True)
    _mark_done(node, data)


def _remove_mons(props, nodes, systemd, names, olds) -> None:
    admin = nodes[props["mons"][0]]
    for name in names:
        if name in _monmap(props, admin):
            ceph(admin, props["cluster_name"], "mon", "remove", name, change=True)
        node = nodes.get(name) or node_session(_old_conn(olds, name))
        services.stop(node, _daemon_of(props, "mon", name), systemd.get(name, False))
        node.run(["rm", "-rf", _mon_dir(props, name)], change=True)


def _old_conn(olds: dict, name: str) -> dict:
    return next(n for n in olds["nodes"] if n["name"] == name)


def _quorum(props: dict, admin) -> list[str]:
    result = ceph(admin, props["cluster_name"], "quorum_status", "-f", "json", check=False,
                  timeout=30)
    return ceph_facts.quorum_names(result.stdout) if result.exit_code == 0 else []


def _monmap(props: dict, admin) -> list[str]:
    return ceph_facts.monmap_names(ceph_json(admin, props["cluster_name"], "mon", "dump"))


def _options(props: dict, admin, old_options: dict) -> None:
    """`ceph config set` what differs; `ceph config rm` what the stack no longer sets."""
    c = props["cluster_name"]
    current = ceph_facts.config_dump(ceph_json(admin, c, "config", "dump"))
    wanted = _wanted_options(props)
    for section, opts in wanted.items():
        for option, value in opts.items():
            if _typed(current.get(section, {}).get(option), value) != value:
                ceph(admin, c, "config", "set", section, option, str(value), change=True)
    for section, opts in (old_options or {}).items():
        for option in opts:
            if option not in wanted.get(section, {}) and option in current.get(section, {}):
                ceph(admin, c, "config", "rm", section, option, change=True)


def _wanted_options(props: dict) -> dict:
    wanted = {s: dict(o) for s, o in BASE_OPTIONS.items()}
    for section, opts in (props.get("options") or {}).items():
        wanted.setdefault(section, {}).update({k: str(v).lower() if isinstance(v, bool)
                                               else str(v) for k, v in opts.items()})
    return wanted


def _daemon_of(props: dict, kind: str, name: str) -> services.Daemon:
    return services.ceph_daemon(kind, name, props["cluster_name"])


def _daemon_dir(props: dict, kind: str, name: str) -> str:
    return f"/var/lib/ceph/{kind}/{props['cluster_name']}-{name}"


def _daemon(props: dict, kind: str, name: str, node, admin, systemd: bool) -> None:
    """A mgr or MDS: its key from the cluster (get-or-create keeps an existing one), written
    by ceph itself into the daemon's directory, then the daemon unless it runs."""
    c, data = props["cluster_name"], _daemon_dir(props, kind, name)
    if not node.ok(["test", "-s", data + "/keyring"]):
        node.run(["install", "-d", "-o", "ceph", "-g", "ceph", "-m", "0750", data], change=True)
        ceph(node, c, "auth", "get-or-create", f"{kind}.{name}", *DAEMON_CAPS[kind],
             "-o", data + "/keyring", change=True)
        node.run(["chown", "-R", "ceph:ceph", data], change=True)
    services.ensure_running(node, _daemon_of(props, kind, name), systemd)


def _remove_daemon(props, kind, name, node, admin, systemd) -> None:
    services.stop(node, _daemon_of(props, kind, name), systemd)
    ceph(admin, props["cluster_name"], "auth", "rm", f"{kind}.{name}", change=True,
         check=False)
    node.run(["rm", "-rf", _daemon_dir(props, kind, name)], change=True)


def _wait_daemons(props: dict, admin) -> None:
    """Quorum is there; now a mgr must be active and every MDS registered, and no health
    check may remain that is not the business of a later resource (OSDs, pools, fs)."""
    c, timeout = props["cluster_name"], props["health_timeout"]

    def ready():
        mgr = ceph_facts.mgr_state(ceph_json(admin, c, "mgr", "dump"))
        mds = ceph_facts.mds_daemons(ceph_json(admin, c, "fs", "dump"))
        mgrs = {mgr["active"], *mgr["standbys"]}
        return mgr["available"] and set(props["mgrs"]) <= mgrs and set(props["mdss"]) <= set(mds)

    def settled():
        checks = ceph_facts.health(ceph_json(admin, c, "health", "detail"))["checks"]
        return not [k for k in checks if not k.startswith(LATER_CHECKS)]

    report = lambda: "Health: " + ceph_facts.health_report(  # noqa: E731
        ceph_facts.health(ceph_json(admin, c, "health", "detail")))
    base.wait_until(ready, timeout=timeout, what="every mgr (one active) and every MDS registered",
             report=report)
    base.wait_until(settled, timeout=timeout, what="mon/mgr health checks to clear", report=report)


def _observe(props: dict, fsid: str) -> dict:
    """What the cluster reports; mons/mgrs/mdss/options as they really are, for drift."""
    c = props["cluster_name"]
    admin = node_session(next(n for n in props["nodes"]
                              if n["name"] == props["mons"][0]))
    mons = _quorum(props, admin)  # a mon that is down shows as missing: drift to repair
    mgr = ceph_facts.mgr_state(ceph_json(admin, c, "mgr", "dump"))
    mds = ceph_facts.mds_daemons(ceph_json(admin, c, "fs", "dump"))
    current = ceph_facts.config_dump(ceph_json(admin, c, "config", "dump"))
    options = {s: {o: current.get(s, {}).get(o) for o in opts}
               for s, opts in (props.get("options") or {}).items()}
    h = ceph_facts.health(ceph_json(admin, c, "health", "detail"))
    order = lambda names, wanted: [n for n in wanted if n in names] + sorted(  # noqa: E731
        n for n in names if n not in wanted)
    return {
        "fsid": fsid,
        "mons": order(mons, props["mons"]),
        "mgrs": order([m for m in [mgr["active"]] + mgr["standbys"] if m], props["mgrs"]),
        "mdss": order(list(mds), props["mdss"]),
        "options": {s: {o: _typed(v, props["options"][s][o]) for o, v in opts.items()}
                    for s, opts in options.items()},
        "mon_addresses": [mon_addrv(_address(props, m)) for m in props["mons"]],
        "mon_hosts": [f"{_address(props, m)}:6789" for m in props["mons"]],
        "version": ceph_facts.version(ceph_json(admin, c, "version")),
        "health": h["status"],
        "health_checks": h["checks"],
    }


def _typed(observed, wanted):
    """Config values come back as text (`6` as `6.000000` for a float option); compare them
    as the stack wrote them."""
    if observed is None:
        return None
    if str(observed).lower() == str(wanted).lower():
        return wanted
    try:
        return wanted if float(observed) == float(wanted) else observed
    except (TypeError, ValueError):
        return observed


def _wipe_node(props: dict, name: str, node) -> None:
    systemd = services.has_systemd(node)
    for kind in ("mds", "mgr", "mon"):
        services.stop(node, _daemon_of(props, kind, name), systemd)
        node.run(["rm", "-rf", _daemon_dir(props, kind, name)], change=True)
    node.run(["rm", "-f", _conf_path(props), _admin_keyring_path(props), _fsid_path(props),
              _bootstrap_keyring_path(props),
              f"/var/lib/ceph/tmp/{props['cluster_name']}.monmap",
              f"/var/lib/ceph/bootstrap-osd/{props['cluster_name']}.keyring"], change=True)


class CephCluster(pulumi.dynamic.Resource, module="cephkvm", name="CephCluster"):
    fsid: pulumi.Output[str]
    mon_addresses: pulumi.Output[list]
    mon_hosts: pulumi.Output[list]
    admin_key: pulumi.Output[str]
    version: pulumi.Output[str]
    health: pulumi.Output[str]
    health_checks: pulumi.Output[dict]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["admin_key"]))
        super().__init__(CephClusterProvider(), name, {**{k: None for k in OUTPUTS}, **props},
                         opts)
