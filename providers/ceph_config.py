"""CephConfig: the cluster's central options (`ceph config set`), and the cluster's version
and health as observed.

It is the first resource that needs a quorum, so it comes after the mons and waits for all
of them to be in quorum: that is where a fresh cluster's mons, created in parallel, meet.
Options live in the mons' store, so they cannot be set by CephCluster, which exists before
any mon. Mgrs, MDS and OSDs come after it.
"""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts
from providers.ceph_cli import admin_session, ceph, ceph_json, health, quorum, wait_for_quorum
from providers.errors import Failure
from providers.schema.ceph import ConfigInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py ConfigInputs
# outputs: options (as the cluster has them), version, health, health_checks
INPUTS = ConfigInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)
OUTPUTS = ("version", "health", "health_checks")

SETTLE_POLL = 0.5  # seconds between looks at the quorum and the mons' health checks
# Options every cluster gets: Pacific warns until insecure global_id reclaim is turned off.
BASE_OPTIONS = {"mon": {"auth_allow_insecure_global_id_reclaim": "false"}}
# Checks a cluster may show until mgrs, OSDs, pools and filesystems exist: they belong to
# the resources that come later, which wait for their own part of the health.
LATER_CHECKS = ("MGR_", "OSD_", "PG_", "POOL_", "TOO_FEW_", "MDS_", "FS_", "OBJECT_", "SLOW_OPS")


class CephConfigProvider(base.Provider):
    INPUTS = INPUTS
    SETTLE = True

    def create(self, props):
        return CreateResult(props["fsid"], {**props, **_converge(props, {})})

    def read(self, id_, props):
        return ReadResult(id_, {**props, **_observe(props, admin_session(props))})

    def update(self, _id, olds, news):
        return UpdateResult({**news, **_converge(news, olds.get("options") or {})})

    def delete(self, _id, props):
        """The options go from the mons' store; with no quorum there is no store to
        change (the cluster is being taken down)."""
        if not props.get("allow_data_loss"):
            raise Failure(
                f"refusing to take down the configuration of Ceph cluster {props.get('fsid')}:"
                " the mons would be removed next, and the cluster with them. To really delete"
                " it, set cephkvm:ceph.allow_data_loss to true, run `pulumi up`, then destroy"
                " again."
            )
        node = admin_session(props)
        c = props["cluster_name"]
        if not quorum(node, c):
            return
        current = ceph_facts.config_dump(ceph_json(node, c, "config", "dump"))
        for section, opts in (props.get("options") or {}).items():
            for option in opts:
                if option in current.get(section, {}):
                    ceph(node, c, "config", "rm", section, option, change=True)


def _converge(props: dict, old_options: dict) -> dict:
    node = admin_session(props)
    c = props["cluster_name"]
    # Looked at twice a second: the first mons meet and clear their checks within
    # seconds, and nothing else runs yet (bench/README).
    wait_for_quorum(node, c, props["timeout"], props["mons"], interval=SETTLE_POLL)
    _options(props, node, old_options)
    _wait_settled(props, node)
    return _observe(props, node)


def _options(props: dict, node, old_options: dict) -> None:
    """`ceph config set` what differs; `ceph config rm` what the stack no longer sets."""
    c = props["cluster_name"]
    current = ceph_facts.config_dump(ceph_json(node, c, "config", "dump"))
    wanted = _wanted_options(props)
    for section, opts in wanted.items():
        for option, value in opts.items():
            if _typed(current.get(section, {}).get(option), value) != value:
                ceph(node, c, "config", "set", section, option, str(value), change=True)
    for section, opts in (old_options or {}).items():
        for option in opts:
            if option not in wanted.get(section, {}) and option in current.get(section, {}):
                ceph(node, c, "config", "rm", section, option, change=True)


def _wanted_options(props: dict) -> dict:
    wanted = {s: dict(o) for s, o in BASE_OPTIONS.items()}
    for section, opts in (props.get("options") or {}).items():
        wanted.setdefault(section, {}).update(
            {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in opts.items()}
        )
    return wanted


def _wait_settled(props: dict, node) -> None:
    """No health check may remain that is not the business of a later resource."""
    c = props["cluster_name"]

    def settled_now():
        checks = health(node, c)["checks"]
        return not [k for k in checks if not k.startswith(LATER_CHECKS)]

    base.wait_until(
        settled_now,
        timeout=props["timeout"],
        interval=SETTLE_POLL,
        what="mon health checks to clear",
        report=lambda: "Health: " + ceph_facts.health_report(health(node, c)),
    )


def _observe(props: dict, node) -> dict:
    """Options as the cluster has them (drift), version and health as it reports them."""
    c = props["cluster_name"]
    current = ceph_facts.config_dump(ceph_json(node, c, "config", "dump"))
    h = health(node, c)
    return {
        "options": {
            s: {o: _typed(current.get(s, {}).get(o), v) for o, v in opts.items()}
            for s, opts in (props.get("options") or {}).items()
        },
        "version": ceph_facts.version(ceph_json(node, c, "version")),
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


class CephConfig(pulumi.dynamic.Resource, module="cephkvm", name="CephConfig"):
    version: pulumi.Output[str]
    health: pulumi.Output[str]
    health_checks: pulumi.Output[dict]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephConfigProvider(), name, {**{k: None for k in OUTPUTS}, **props}, opts)
