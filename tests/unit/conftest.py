"""Shared unit-tier fixtures."""

import pulumi
import pytest

from providers import base
from tests.unit import fakes
from tests.unit.ceph_fakes import CephWorld, bring_up, cluster_props, mon_props


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
    assert not fakes.UNCLAIMED, "commands no fake handler answers: " + "; ".join(
        c.line for c in fakes.UNCLAIMED
    )


@pytest.fixture
def host(monkeypatch):
    """A plain fake node (fakes.FakeHost) answering every provider's session."""
    fake = fakes.FakeHost()
    monkeypatch.setattr(base, "session", lambda props, **_: fake.session())
    return fake


# --- the fake Ceph cluster (ceph_fakes) -------------------------------------------------


@pytest.fixture
def world(monkeypatch):
    """Three fake Ceph nodes answering every provider's session; nothing on them yet."""
    return CephWorld().serve(monkeypatch)


@pytest.fixture
def mons_up(world):
    """The cluster made and a mon running on every node: world.fsid set, journal cleared."""
    from providers.ceph_cluster import CephClusterProvider
    from providers.ceph_mon import CephMonProvider

    world.fsid = CephClusterProvider().create(cluster_props(world)).outs["fsid"]
    for name in world.nodes:
        CephMonProvider().create(mon_props(world, world.fsid, name))
    world.log.clear()


@pytest.fixture
def ceph_up(world):
    """The Ceph core up as the component builds it (ceph_fakes.bring_up): world.fsid set,
    journal cleared."""
    world.fsid = bring_up(world)["fsid"]
    world.log.clear()
