"""Shared unit-tier fixtures."""
import pulumi
import pytest

from tests.unit import fakes


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


@pytest.fixture(autouse=True)
def every_command_claimed():
    """A command no fake handler answers fails its test, also where the provider caught
    the error (or a pytest.raises matched its text)."""
    fakes.UNCLAIMED.clear()
    yield
    assert not fakes.UNCLAIMED, "commands no fake handler answers: " + \
        "; ".join(c.line for c in fakes.UNCLAIMED)
