"""Shared unit-tier fixtures."""
import pulumi
import pytest


class Mocks(pulumi.runtime.Mocks):
    """Pulumi's mocks, recording every registered resource as (type, name, inputs)."""

    def __init__(self):
        self.registered = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.registered.append((args.typ, args.name, args.inputs))
        outputs = dict(args.inputs)
        if args.typ.endswith(":Node"):  # what a Node learns on first contact
            outputs["host_key"] = f"ssh-ed25519 AAAA{args.name}"
        return f"{args.name}-id", outputs

    def call(self, args):
        return {}


@pytest.fixture
def mocks():
    m = Mocks()
    pulumi.runtime.set_mocks(m, preview=True)
    return m
