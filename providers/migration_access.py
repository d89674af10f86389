"""MigrationAccess: one KVM node's part of live migration. Its libvirtd gets the stack's
MigrationKey (root-only file), and the node's SSH user accepts that key, from the other
KVM nodes' addresses only, with no forwarding or terminal (`restrict`).

Checks before acting: the authorized_keys line and the key file are rewritten only when
they differ from what is wanted. Delete removes exactly the lines marked with the key's
comment and the key file.
"""

from __future__ import annotations

import hashlib
import json
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers import base
from providers.schema.kvm import MigrationAccessInputs
from providers.transport import Session

KEY_PATH = "/root/.ssh/cephkvm_migration"  # read by libvirtd, which runs as root
PEERS_PATH = "/root/.ssh/cephkvm_peers.json"  # read by CloudVM's read (providers/cloud_vm.py)
# Each peer_nodes entry: a KVM node's connection fields; its host key pinned in config or
# learned by its Node (state_host_key, which diff ignores: learning it changes nothing).
PEER_FIELDS = ("name", "address", "port", "user", "host_key", "state_host_key")


def peer(connection: dict) -> dict:
    """A KVM node's entry in peer_nodes."""
    return {k: connection[k] for k in PEER_FIELDS if k in connection}


# --- input schema -----------------------------------------------------------------------
# providers/schema/kvm.py MigrationAccessInputs (+ ssh_private_key?)
# outputs: key_path
INPUTS = MigrationAccessInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class MigrationAccessProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        _converge(self.node, props)
        return CreateResult(props["node"], {**props, "key_path": KEY_PATH})

    def read(self, id_, props):
        node = self.node
        # What is missing shows as drift, so `up` after a refresh puts it back.
        line_ok = _line(props) in _authorized(node, props)[1].splitlines()
        return ReadResult(
            id_,
            {
                **props,
                "public_key": props["public_key"] if line_ok else "",
                "private_key": props["private_key"] if _key_ok(node, props) else "",
                "peer_nodes": props.get("peer_nodes") if _peers_ok(node, props) else [],
            },
        )

    def update(self, _id, olds, news):
        if _comment(olds) != _comment(news):
            _revoke(base.session(olds), olds)  # the old key, through the old connection
        _converge(self.node, news)
        return UpdateResult({**news, "key_path": KEY_PATH})

    def delete(self, _id, props):
        _revoke(self.node, props)


# --- converging -------------------------------------------------------------------------


def _converge(node: Session, props: dict) -> None:
    path, text = _authorized(node, props)
    wanted = "\n".join(_others(text, props) + [_line(props)]) + "\n"
    if wanted != text:
        _ensure_dir(node, path.rsplit("/", 1)[0], _user(props))
        node.put(path, wanted, mode="0600", owner=f"{_user(props)}:")
    if not _key_ok(node, props):
        _ensure_dir(node, KEY_PATH.rsplit("/", 1)[0], "root")
        node.put(KEY_PATH, props["private_key"], mode="0600", secret=True)
    _ensure_dir(node, PEERS_PATH.rsplit("/", 1)[0], "root")
    node.put_if_changed(PEERS_PATH, _peers_text(props), mode="0600")


def _revoke(node: Session, props: dict) -> None:
    path, text = _authorized(node, props)
    kept = _others(text, props)
    if len(kept) != len(text.splitlines()):
        node.put(
            path, "\n".join(kept) + ("\n" if kept else ""), mode="0600", owner=f"{_user(props)}:"
        )
    for path in (KEY_PATH, PEERS_PATH):
        if node.ok(["test", "-e", path]):
            node.run(["rm", "-f", "--", path], change=True)


def _ensure_dir(node, path: str, owner: str) -> None:
    if not node.ok(["test", "-d", path]):
        node.run(["install", "-d", "-m", "0700", "-o", owner, path], change=True)


# --- facts ------------------------------------------------------------------------------


def _user(props: dict) -> str:
    return props["connection"].get("user") or "root"


def _comment(props: dict) -> str:
    return props["public_key"].split()[-1]


def _line(props: dict) -> str:
    return f'from="{",".join(props["peers"])}",restrict {props["public_key"]}'


def _others(text: str, props: dict) -> list[str]:
    """authorized_keys lines that are not this key's (marked by its comment)."""
    return [line for line in text.splitlines() if line.split()[-1:] != [_comment(props)]]


def _authorized(node, props: dict) -> tuple[str, str]:
    """The SSH user's authorized_keys path and text ('' when it does not exist)."""
    entry = node.run(["getent", "passwd", _user(props)]).stdout.strip().split(":")
    path = f"{entry[5]}/.ssh/authorized_keys"
    return path, node.get(path) or ""


def _key_ok(node, props: dict) -> bool:
    out = node.run(["sha256sum", "--", KEY_PATH], check=False).stdout.split()
    return out[:1] == [hashlib.sha256(props["private_key"].encode()).hexdigest()]


def _peers_text(props: dict) -> str:
    return json.dumps(list(props.get("peer_nodes") or []), sort_keys=True) + "\n"


def _peers_ok(node, props: dict) -> bool:
    return node.get(PEERS_PATH) == _peers_text(props)


class MigrationAccess(pulumi.dynamic.Resource, module="cephkvm", name="MigrationAccess"):
    key_path: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(additional_secret_outputs=["private_key", "ssh_private_key"]),
        )
        super().__init__(MigrationAccessProvider(), name, {"key_path": None, **props}, opts)
