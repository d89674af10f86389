"""Ceph facts: the `ceph ... -f json` questions providers ask, and pure parsers for the
answers (tested from captured JSON in tests/unit/fixtures). Nothing here changes a node."""

from __future__ import annotations

import json


def _load(text: str):
    text = (text or "").strip()
    return json.loads(text) if text else {}


def quorum_names(text: str) -> list[str]:
    """`ceph quorum_status -f json` -> names of the mons in quorum."""
    return sorted(_load(text).get("quorum_names", []))


def monmap_names(text: str) -> list[str]:
    """`ceph mon dump -f json` -> names of every mon in the monmap."""
    return sorted(m["name"] for m in _load(text).get("mons", []))


def mon_status(text: str) -> dict:
    """`ceph daemon mon.X mon_status` (its admin socket) -> {state, monmap: names}."""
    doc = _load(text)
    return {
        "state": doc.get("state", ""),
        "monmap": sorted(m["name"] for m in doc.get("monmap", {}).get("mons", [])),
    }


def mgr_state(text: str) -> dict:
    """`ceph mgr dump -f json` -> {active, available, standbys}."""
    doc = _load(text)
    return {
        "active": doc.get("active_name", ""),
        "available": bool(doc.get("available")),
        "standbys": sorted(s["name"] for s in doc.get("standbys", [])),
    }


def mds_daemons(text: str) -> dict:
    """`ceph fs dump -f json` -> {daemon name: state} over standbys and every filesystem."""
    doc = _load(text)
    found = {s["name"]: s["state"] for s in doc.get("standbys", [])}
    for fs in doc.get("filesystems", []):
        for info in fs.get("mdsmap", {}).get("info", {}).values():
            found[info["name"]] = info["state"]
    return found


def filesystems(text: str) -> dict:
    """`ceph fs dump -f json` -> {fs name: {max_mds, standby_count, active, pools...}}."""
    doc = _load(text)
    found = {}
    for fs in doc.get("filesystems", []):
        mdsmap = fs.get("mdsmap", {})
        found[mdsmap["fs_name"]] = {
            "max_mds": mdsmap.get("max_mds", 1),
            "standby_count": mdsmap.get("standby_count_wanted", 0),
            "active": sorted(
                i["name"] for i in mdsmap.get("info", {}).values() if i.get("state") == "up:active"
            ),
            "metadata_pool_id": mdsmap.get("metadata_pool"),
            "data_pool_ids": list(mdsmap.get("data_pools", [])),
        }
    return found


def health(text: str) -> dict:
    """`ceph health detail -f json` -> {status, checks: {CODE: summary}}."""
    doc = _load(text)
    checks = {
        code: c.get("summary", {}).get("message", "") for code, c in doc.get("checks", {}).items()
    }
    return {"status": doc.get("status", "HEALTH_UNKNOWN"), "checks": checks}


# Checks that say the cluster has not recovered from a node's blip (a bridge change).
UNSETTLED = ("MON_DOWN", "OSD_DOWN", "OSD_HOST_DOWN", "PG_DEGRADED", "PG_AVAILABILITY", "SLOW_OPS")


def unsettled(text: str) -> list[str]:
    """`ceph health -f json` -> the checks that say it has not recovered (and any error)."""
    checks = _load(text).get("checks", {})
    return sorted(
        name for name in checks if name in UNSETTLED or checks[name].get("severity") == "HEALTH_ERR"
    )


def health_report(h: dict) -> str:
    if not h["checks"]:
        return h["status"]
    return h["status"] + ": " + "; ".join(f"{k}: {v}" for k, v in sorted(h["checks"].items()))


def version(text: str) -> str:
    """`ceph version -f json` -> '16.2.15'."""
    words = _load(text).get("version", "").split()
    return words[2] if len(words) > 2 else ""


def osds(text: str) -> dict:
    """`ceph osd tree -f json` -> {osd id: {host, up, in (reweight > 0)}}."""
    doc = _load(text)
    hosts = {}
    for item in doc.get("nodes", []):
        if item.get("type") == "host":
            for child in item.get("children", []):
                hosts[child] = item["name"]
    found = {}
    for item in doc.get("nodes", []) + doc.get("stray", []):
        if item.get("type") == "osd":
            found[item["id"]] = {
                "host": hosts.get(item["id"], ""),
                "up": item.get("status") == "up",
                "in": item.get("reweight", 0) > 0,
            }
    return found


def osd_states(text: str) -> dict:
    """`ceph osd dump -f json` -> {osd id: its state words (exists, up, noout, ...)}."""
    return {o["osd"]: set(o.get("state", [])) for o in _load(text).get("osds", [])}


def raw_devices(text: str) -> dict:
    """`ceph-volume raw list DEV --format json` -> {device: {osd_id, osd_uuid, ceph_fsid}}."""
    doc = _load(text)
    return {
        v["device"]: {
            "osd_id": v["osd_id"],
            "osd_uuid": v["osd_uuid"],
            "ceph_fsid": v.get("ceph_fsid", ""),
        }
        for v in doc.values()
    }


def pools(text: str) -> dict:
    """`ceph osd pool ls detail -f json` -> {pool name: facts the CephPool provider owns}."""
    found = {}
    for p in _load(text) or []:
        found[p["pool_name"]] = {
            "pool_id": p["pool_id"],
            "type": "erasure" if p.get("type") == 3 else "replicated",  # pg_pool_t::TYPE_*
            "size": p["size"],
            "min_size": p["min_size"],
            "pg_num": p.get("pg_num_target") or p.get("pg_num"),
            "autoscale": p.get("pg_autoscale_mode", "on"),
            "application": next(iter(sorted(p.get("application_metadata") or {})), ""),
            "erasure_code_profile": p.get("erasure_code_profile", ""),
            "ec_overwrites": "ec_overwrites" in p.get("flags_names", ""),
            "quota_max_bytes": p.get("quota_max_bytes", 0),
            "quota_max_objects": p.get("quota_max_objects", 0),
        }
    return found


def pg_states(text: str) -> dict:
    """`ceph pg dump pgs_brief -f json` -> {state: count}."""
    doc = _load(text)
    rows = doc.get("pg_stats", doc) if isinstance(doc, dict) else doc
    counts: dict = {}
    for row in rows or []:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


def all_clean(counts: dict) -> bool:
    return all(state == "active+clean" for state in counts)


def config_dump(text: str) -> dict:
    """`ceph config dump -f json` -> {section: {option: value}}."""
    found: dict = {}
    for row in _load(text) or []:
        found.setdefault(row["section"], {})[row["name"]] = str(row["value"])
    return found


def auth_entity(text: str) -> dict:
    """`ceph auth get client.X -f json` -> {entity, key, caps}."""
    doc = _load(text)
    doc = doc[0] if isinstance(doc, list) and doc else doc
    return (
        {"entity": doc.get("entity", ""), "key": doc.get("key", ""), "caps": doc.get("caps", {})}
        if doc
        else {}
    )


def mgr_modules(text: str) -> set:
    """`ceph mgr module ls -f json` -> the modules enabled (always-on ones included)."""
    doc = _load(text) or {}
    always = doc.get("always_on_modules", [])
    if isinstance(always, dict):  # some releases key them by release name
        always = [m for names in always.values() for m in names]
    return set(doc.get("enabled_modules", [])) | set(always)


def mgr_services(text: str) -> dict:
    """`ceph mgr services -f json` -> {module: URL} the active mgr serves."""
    return dict(_load(text) or {})
