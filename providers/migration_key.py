"""MigrationKey: the SSH key pair KVM nodes use to reach each other for live migration.

A source node's libvirtd opens the connection to the destination itself (peer to peer), so
it needs a key of its own on the node. This one exists only for that: the controller's key
never leaves the controller. It lives only in the (encrypted) state; MigrationAccess puts
it on the nodes. Changing `comment` makes a new key: that is how to rotate it.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import pulumi
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pulumi.dynamic import CreateResult, ReadResult

from providers import base
from providers.schema.kvm import MigrationKeyInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/kvm.py MigrationKeyInputs
# outputs: public_key ("ssh-ed25519 AAAA... comment"), private_key (secret, OpenSSH PEM)
INPUTS = MigrationKeyInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class MigrationKeyProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        public, private = generate(props["comment"])
        fingerprint = hashlib.sha256(public.encode()).hexdigest()[:16]
        return CreateResult(fingerprint, {**props, "public_key": public, "private_key": private})

    def read(self, id_, props):
        return ReadResult(id_, props)  # it lives only in the state

    # no update: the only input replaces; no delete: nothing outside the state


def generate(comment: str) -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return f"{public} {comment}", private


class MigrationKey(pulumi.dynamic.Resource, module="cephkvm", name="MigrationKey"):
    public_key: pulumi.Output[str]
    private_key: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"])
        )
        super().__init__(
            MigrationKeyProvider(), name, {"public_key": None, "private_key": None, **props}, opts
        )
