"""Components under pulumi's mocks: what the program registers for a config, offline."""

import pulumi
import pytest

from components.config import load
from tests.unit.test_config import ROOT, stack_file

pytestmark = pytest.mark.unit


@pulumi.runtime.test
def test_example_registers_facts_and_prep_per_node(mocks):
    from components.node import PreparedNode

    stack = load(stack_file("example"), ROOT)
    nodes = [PreparedNode(n, stack) for n in stack.nodes]

    def check(_):
        kinds = sorted((typ.rsplit(":", 1)[1], name) for typ, name, _ in mocks.registered)
        assert ("Node", "osd1-facts") in kinds and ("NodePrep", "osd3-prep") in kinds
        prep = next(i for t, n, i in mocks.registered if n == "osd2-prep")
        assert prep["connection"]["user"] == "cephsvc"
        assert prep["connection"]["trust_on_first_use"] is True
        assert prep["daemons"] == ["virtlogd", "libvirtd"]
        # Trust on first use once per stack: what the Node met is what the rest trusts.
        assert prep["connection"]["state_host_key"] == "ssh-ed25519 AAAAosd2-facts"
        facts = next(i for t, n, i in mocks.registered if n == "osd2-facts")
        assert "state_host_key" not in facts["connection"]

    return pulumi.Output.all(*[n.prep.id for n in nodes]).apply(check)
