"""CephPool: one replicated or erasure-coded pool.

`delta(observed, wanted)` is the one place that decides which `ceph osd pool set ...`
commands a change needs; `update` applies exactly that, and `read` reports the pool as the
cluster has it so `pulumi refresh` shows a pool resized by hand. Delete is refused unless the
pool's config says `allow_delete`.
"""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CheckFailure, CreateResult, ReadResult, UpdateResult

from providers import base, ceph_facts
from providers.ceph_cli import admin_session, ceph, ceph_json, health, pg_states
from providers.errors import Failure
from providers.schema.ceph import PoolInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/ceph.py PoolInputs; check_pool below holds the rules across fields
# (also the stack config's). outputs: pool_id
INPUTS = PoolInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class CephPoolProvider(base.Provider):
    INPUTS = INPUTS
    SETTLE = True
    DELETE_BEFORE_REPLACE = True  # the name is taken until then

    def fill(self, news):
        news.setdefault("key", news.get("name"))
        if news["type"] == "erasure":
            if isinstance(news.get("ec_k"), int) and isinstance(news.get("ec_m"), int):
                news["size"] = news["ec_k"] + news["ec_m"]
                news.setdefault("min_size", news["ec_k"] + 1)
            news.setdefault("ec_failure_domain", "host")
            news.setdefault("ec_overwrites", False)
        else:
            news.setdefault("size", 3)
            news.setdefault("min_size", 2)
        news.setdefault("autoscale", "off" if news.get("pg_num") else "on")
        return news

    def rules(self, news, _olds):
        return check_pool(news)

    def create(self, props):
        node = admin_session(props)
        found = _observe(props, node, props["name"])
        if found is None:
            _create(props, node)
            found = _observe(props, node, props["name"])
        elif found["type"] != props["type"]:
            raise Failure(
                f"pool {props['name']} already exists as a {found['type']} pool; "
                f"it cannot become {props['type']} in place"
            )
        _apply(props, node, delta(found, props))
        _wait_clean(props, node)
        return CreateResult(str(found["pool_id"]), {**props, "pool_id": found["pool_id"]})

    def read(self, id_, props):
        node = admin_session(props)
        pools = ceph_facts.pools(
            ceph_json(node, props["cluster_name"], "osd", "pool", "ls", "detail")
        )
        found = next((p | {"name": n} for n, p in pools.items() if str(p["pool_id"]) == id_), None)
        if found is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, **observed_props(found, props)})

    def update(self, id_, olds, news):
        node = admin_session(news)
        found = _observe(news, node, olds["name"])
        if found is None:
            raise Failure(f"pool {olds['name']} (id {id_}) is gone; run `pulumi refresh`")
        _apply(news, node, delta(found, news))
        _wait_clean(news, node)
        return UpdateResult({**news, "pool_id": found["pool_id"]})

    def delete(self, _id, props):
        if not props.get("allow_delete"):
            raise Failure(
                f"refusing to delete pool {props['name']}: its data would be lost. Set "
                "allow_delete: true on the pool in cephkvm:pools, run `pulumi up`, then try "
                "again."
            )
        node = admin_session(props)
        c, name = props["cluster_name"], props["name"]
        if _observe(props, node, name) is None:
            return
        ceph(node, c, "config", "set", "mon", "mon_allow_pool_delete", "true", change=True)
        try:
            ceph(
                node,
                c,
                "osd",
                "pool",
                "rm",
                name,
                name,
                "--yes-i-really-really-mean-it",
                change=True,
            )
        finally:
            ceph(node, c, "config", "rm", "mon", "mon_allow_pool_delete", change=True)
        if props["type"] == "erasure":
            ceph(
                node,
                c,
                "osd",
                "erasure-code-profile",
                "rm",
                _profile(props),
                change=True,
                check=False,
            )


def check_pool(p: dict) -> list:
    """Failures across fields, naming the field and the fix (also the stack config's rules,
    components/config_ceph.py). Types and enums are the schema's."""
    fail = []
    if p.get("type") == "erasure":
        for f in ("ec_k", "ec_m"):
            if not isinstance(p.get(f), int) or p[f] < 1:
                fail.append(CheckFailure(f, f"{f} must be a positive integer"))
    else:
        size, min_size = p.get("size", 3), p.get("min_size", 2)
        if not isinstance(min_size, int) or min_size < 1:
            fail.append(CheckFailure("min_size", "min_size must be at least 1"))
        elif not isinstance(size, int) or size < min_size:
            fail.append(
                CheckFailure("size", f"size ({size}) must be at least min_size ({min_size})")
            )
    if p.get("pg_num") is not None and (not isinstance(p["pg_num"], int) or p["pg_num"] < 1):
        fail.append(
            CheckFailure(
                "pg_num", "pg_num must be a positive integer (or unset for the autoscaler)"
            )
        )
    return fail


# --- the delta --------------------------------------------------------------------------


def observed_props(found: dict, wanted: dict) -> dict:
    """The pool as input fields. pg_num is reported only when the stack fixes it: with the
    autoscaler on, Ceph's choice is not drift."""
    out = {
        "name": found["name"],
        "size": found["size"],
        "min_size": found["min_size"],
        "autoscale": found["autoscale"],
        "application": found["application"] or None,
        "quota_max_bytes": found["quota_max_bytes"],
        "quota_max_objects": found["quota_max_objects"],
        "pool_id": found["pool_id"],
    }
    if wanted.get("pg_num"):
        out["pg_num"] = found["pg_num"]
    if found["type"] == "erasure":
        out["ec_overwrites"] = found["ec_overwrites"]
    return out


def delta(found: dict, wanted: dict) -> list[list]:
    """The `ceph` argument lists that turn the observed pool into the wanted one."""
    name, cmds = found["name"], []
    if wanted["name"] != name:
        cmds.append(["osd", "pool", "rename", name, wanted["name"]])
        name = wanted["name"]
    if wanted["type"] == "replicated" and found["size"] != wanted["size"]:
        cmds.append(["osd", "pool", "set", name, "size", wanted["size"]])
    if found["min_size"] != wanted["min_size"]:
        cmds.append(["osd", "pool", "set", name, "min_size", wanted["min_size"]])
    if found["autoscale"] != wanted["autoscale"]:
        cmds.append(["osd", "pool", "set", name, "pg_autoscale_mode", wanted["autoscale"]])
    if wanted.get("pg_num") and found["pg_num"] != wanted["pg_num"]:
        cmds.append(["osd", "pool", "set", name, "pg_num", wanted["pg_num"]])
    if wanted.get("ec_overwrites") and not found.get("ec_overwrites"):
        cmds.append(["osd", "pool", "set", name, "allow_ec_overwrites", "true"])
    app = wanted.get("application") or ""
    if found["application"] != app:
        if found["application"]:
            cmds.append(
                [
                    "osd",
                    "pool",
                    "application",
                    "disable",
                    name,
                    found["application"],
                    "--yes-i-really-mean-it",
                ]
            )
        if app:
            cmds.append(["osd", "pool", "application", "enable", name, app])
    for quota in ("max_bytes", "max_objects"):
        if found[f"quota_{quota}"] != wanted.get(f"quota_{quota}", 0):
            cmds.append(["osd", "pool", "set-quota", name, quota, wanted.get(f"quota_{quota}", 0)])
    return cmds


def _apply(props: dict, node, cmds: list) -> None:
    for argv in cmds:
        ceph(node, props["cluster_name"], *argv, change=True)


# --- create -----------------------------------------------------------------------------


def _profile(props: dict) -> str:
    return f"cephkvm-{props['key']}"


def _create(props: dict, node) -> None:
    c, name = props["cluster_name"], props["name"]
    pg = props.get("pg_num") or 32
    autoscale = f"--autoscale-mode={props['autoscale']}"  # one osdmap commit less
    if props["type"] == "replicated":
        ceph(node, c, "osd", "pool", "create", name, pg, pg, "replicated", autoscale, change=True)
        return
    profile = _profile(props)
    if ceph(node, c, "osd", "erasure-code-profile", "get", profile, check=False).exit_code:
        ceph(
            node,
            c,
            "osd",
            "erasure-code-profile",
            "set",
            profile,
            f"k={props['ec_k']}",
            f"m={props['ec_m']}",
            f"crush-failure-domain={props['ec_failure_domain']}",
            change=True,
        )
    ceph(node, c, "osd", "pool", "create", name, pg, pg, "erasure", profile, autoscale, change=True)


def _observe(props: dict, node, name: str) -> dict | None:
    pools = ceph_facts.pools(ceph_json(node, props["cluster_name"], "osd", "pool", "ls", "detail"))
    return pools[name] | {"name": name} if name in pools else None


def _wait_clean(props: dict, node) -> None:
    """Until Ceph lists the pool's PGs, all active+clean (none listed yet is not clean)."""
    c, name = props["cluster_name"], props["name"]

    def states():
        return pg_states(node, c, "ls-by-pool", name)

    base.wait_until(
        lambda: (found := states()) and ceph_facts.all_clean(found),
        timeout=props["timeout"],
        what=f"pool {name}'s placement groups to be active+clean",
        report=lambda: (
            f"PG states: {states()}; health: " + ceph_facts.health_report(health(node, c))
        ),
    )


class CephPool(pulumi.dynamic.Resource, module="cephkvm", name="CephPool"):
    pool_id: pulumi.Output[int]
    name: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(CephPoolProvider(), name, {"pool_id": None, **props}, opts)
