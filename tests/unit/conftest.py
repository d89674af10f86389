"""Shared unit-tier fixtures."""
import pulumi
import pytest


class Mocks(pulumi.runtime.Mocks):
    """Pulumi's mocks, recording every registered resource as (type, name, inputs)."""

    def __init__(self):
        self.registered = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.registered.append((args.typ, args.name, args.inputs))
        return f"{args.name}-id", args.inputs

    def call(self, args):
        return {}


@pytest.fixture
def mocks():
    m = Mocks()
    pulumi.runtime.set_mocks(m, preview=True)
    return m
