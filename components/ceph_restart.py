"""Which Ceph daemons a config change restarts, known at preview.

An option Ceph reads only when a daemon starts (its `can_update_at_runtime` is false:
components/ceph_startup_options.txt, made from the cluster by
scripts/ceph_startup_options.py) is written to ceph.conf too (CephConf, which every daemon
of a node waits for), and a digest of those options goes into the `restart` value of the
daemons it applies to, so preview lists them and `up` restarts them one node at a time,
each gated like an explicit `cephkvm:ceph.restart`. Options that change at runtime restart
nothing. Taking a startup option away restarts nothing: it goes at the next restart.
Pure: reads nothing but the list.
"""

from __future__ import annotations

import hashlib
import os

LIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ceph_startup_options.txt")


def _load() -> frozenset:
    with open(LIST) as f:
        return frozenset(line.strip() for line in f if line.strip() and not line.startswith("#"))


STARTUP_ONLY = _load()


def startup_options(options: dict) -> dict:
    """{section: {name: value}} of the options a daemon reads only at start."""
    found = {
        section: {n: v for n, v in opts.items() if n in STARTUP_ONLY}
        for section, opts in (options or {}).items()
    }
    return {s: opts for s, opts in sorted(found.items()) if opts}


def conf_text(startup: dict) -> str:
    """Those options as ceph.conf sections, appended to the cluster's [global]."""
    lines = ["# Read only at daemon start (cephkvm:ceph.options); see components/ceph_restart.py"]
    for section, opts in startup.items():
        lines.append(f"[{section}]")
        lines += [f"{name} = {_value(value)}" for name, value in sorted(opts.items())]
    return "\n".join(lines) + "\n" if startup else ""


def _value(value) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f'"{text}"' if any(c in text for c in "#;") else text  # else a comment


def restart_value(asked: str | None, startup: dict, kind: str, ident: str) -> str | None:
    """The daemon's `restart`: the operator's value and a digest of the startup options
    that apply to it (global, its kind, or kind.ident; kind.N of an OSD applies to every
    OSD, as the OSD's id is only known once it exists)."""
    mine = {
        s: opts
        for s, opts in startup.items()
        if s == "global"
        or s == kind
        or s.startswith(f"{kind}.")
        and (kind == "osd" or s == f"{kind}.{ident}")
    }
    digest = hashlib.sha256(repr(sorted((s, sorted(o.items())) for s, o in mine.items())).encode())
    parts = [asked] if asked else []
    if mine:
        parts.append("conf-" + digest.hexdigest()[:12])
    value = ".".join(parts)
    if len(value) > 64:  # the daemons' `restart` is one word of at most 64
        value = "restart-" + hashlib.sha256(value.encode()).hexdigest()[:24]
    return value or None
