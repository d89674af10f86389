"""A stack state in which every resource of the current config already exists, made without
any host: the engine tier previews changes against it with the real CLI and the real
providers' check and diff.

Each resource's state is what the engine's own preview says its checked inputs are. Values
that only a host can give (the fsid, what a node reports) get stand-ins; a few more
preview rounds then settle what depends on them, until a preview shows no change."""

from __future__ import annotations

import json
import os
import uuid

from tests.cli import Project

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # how the engine shows a value not known yet
SECRET = "[secret]"  # how preview --json shows a secret, even with --show-secrets
# Secret inputs the program takes from another resource's stand-in outputs: the same values.
SECRET_STAND_INS = {"private_key": "stand-in", "admin_key": "stand-in", "password": "stand-in"}
PROVIDER = "pulumi:providers:pulumi-python"
# Outputs other resources read, as a created resource would report them.
STAND_INS = {
    "LoginPassword": lambda props: {"password": SECRET_STAND_INS["password"]},
    "CephCluster": lambda props: {
        "fsid": "1f0c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        "mon_hosts": [f"{n['address']}:6789" for n in props["nodes"] if n["name"] in props["mons"]],
        "mon_addresses": [
            f"[v2:{n['address']}:3300,v1:{n['address']}:6789]"
            for n in props["nodes"]
            if n["name"] in props["mons"]
        ],
        "conf": "# stand-in ceph.conf\n",
        "admin_key": SECRET_STAND_INS["admin_key"],
        "mon_key": "stand-in",
        "bootstrap_osd_key": "stand-in",
    },
    "CephConfig": lambda props: {"version": "16.2.11", "health": "HEALTH_OK"},
    "MigrationKey": lambda props: {
        "public_key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStandIn {props['comment']}",
        "private_key": SECRET_STAND_INS["private_key"],
    },
    "Node": lambda props: {
        "hostname": props["node"],
        "init": "systemd",
        "kvm_available": True,
        "virt_type_effective": "kvm" if props["virt_type"] == "auto" else props["virt_type"],
    },
}


def settle(project: Project, rounds: int = 4) -> None:
    """Import a state with every resource created, and refine it until preview is clean."""
    resources: dict = {}
    for _ in range(rounds):
        steps = _changes(project)
        if not steps:
            _protect(project, resources)
            return
        for step in steps:
            resources[step["urn"]] = _resource(step["newState"])
        _import(project, list(resources.values()))
    raise AssertionError(f"state did not settle: {[s['urn'] for s in _changes(project)]}")


def _protect(project: Project, resources: dict) -> None:
    """Protection as the program asks for it, set once the state has settled (while it
    settles, stand-ins are replaced, which protection would refuse)."""
    steps = project.preview_json()["steps"]
    protected = {s["urn"] for s in steps if (s.get("newState") or {}).get("protect")}
    for urn in protected & set(resources):
        resources[urn]["protect"] = True
    _import(project, list(resources.values()))


def _changes(project: Project) -> list:
    preview = project.preview_json()
    return [s for s in preview["steps"] if s["op"] != "same"]


def _resource(new: dict) -> dict:
    state = {
        key: new[key]
        for key in (
            "urn",
            "custom",
            "type",
            "parent",
            "dependencies",
            "propertyDependencies",
            "provider",
        )
        if key in new
    }
    if not new["custom"]:
        return state
    inputs = _known(new.get("inputs", {}))
    kind = new["type"].rsplit(":", 1)[-1]
    outputs = {**inputs, **STAND_INS.get(kind, lambda _: {})(inputs)}
    state.update(id=new["urn"].rsplit("::", 1)[1], inputs=inputs, outputs=outputs)
    if new["type"].startswith(PROVIDER):
        state.update(id=str(uuid.uuid4()))
    return state


def _known(value, key: str = ""):
    """Unknowns become None: the next round fills them from the stand-ins."""
    if isinstance(value, dict):
        return {k: _known(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_known(v) for v in value]
    if value == SECRET:
        return SECRET_STAND_INS.get(key, value)
    return None if value == UNKNOWN else value


def _import(project: Project, resources: list) -> None:
    deployment = json.loads(project.run("stack", "export", "--stack", project.stack).stdout)
    providers = {r["urn"]: r for r in resources if r["type"].startswith(PROVIDER)}
    for provider_urn in {r["provider"].rsplit("::", 1)[0] for r in resources if "provider" in r}:
        providers.setdefault(
            provider_urn,
            {
                "urn": provider_urn,
                "custom": True,
                "type": PROVIDER,
                "id": str(uuid.uuid4()),
                "inputs": {},
                "outputs": {},
            },
        )
    ids = {urn: p["id"] for urn, p in providers.items()}
    ordered = [*providers.values(), *[r for r in resources if not r["type"].startswith(PROVIDER)]]
    for r in ordered:
        if "provider" in r:
            urn = r["provider"].rsplit("::", 1)[0]
            r["provider"] = f"{urn}::{ids[urn]}"
    deployment["deployment"]["resources"] = _parents_first(ordered)
    path = os.path.join(project.dir, "synthetic-state.json")
    with open(path, "w") as f:
        json.dump(deployment, f)
    project.run("stack", "import", "--stack", project.stack, "--file", path, "--force")


def _parents_first(resources: list) -> list:
    """State lists a resource after its parent, its provider and its dependencies."""
    by_urn = {r["urn"]: r for r in resources}
    ordered, placed = [], set()

    def place(r: dict) -> None:
        if r["urn"] in placed:
            return
        placed.add(r["urn"])
        provider = (r.get("provider") or "::").rsplit("::", 1)[0]
        for urn in [r.get("parent"), provider, *(r.get("dependencies") or [])]:
            if urn in by_urn:
                place(by_urn[urn])
        ordered.append(r)

    for r in resources:
        place(r)
    return ordered
