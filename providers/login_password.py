"""LoginPassword: a password made once for a login cephkvm creates (Cockpit's account) and
kept only in the (encrypted) state, as a secret output. Changing `purpose` makes a new one:
that is how to rotate it."""

from __future__ import annotations

import hashlib
from typing import Optional

import pulumi
from pulumi.dynamic import CreateResult, ReadResult

from providers import base, passwords
from providers.schema.node import PasswordInputs

# --- input schema -----------------------------------------------------------------------
# providers/schema/node.py PasswordInputs
# outputs: password (secret)
INPUTS = PasswordInputs
REPLACES, UPDATES, STATE = base.tables(INPUTS)


class LoginPasswordProvider(base.Provider):
    INPUTS = INPUTS

    def create(self, props):
        password = passwords.generate()
        id_ = hashlib.sha256(props["purpose"].encode()).hexdigest()[:16]
        return CreateResult(id_, {**props, "password": password})

    def read(self, id_, props):
        return ReadResult(id_, props)  # it lives only in the state

    # no update: the only input replaces; no delete: nothing outside the state


class LoginPassword(pulumi.dynamic.Resource, module="cephkvm", name="LoginPassword"):
    password: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["password"])
        )
        super().__init__(LoginPasswordProvider(), name, {"password": None, **props}, opts)
