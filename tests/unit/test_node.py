import pytest

from providers.node import NodeProvider
from tests.unit.fakes import connection

pytestmark = pytest.mark.unit

PROPS = {"node": "node1", "virt_type": "auto", "connection": connection("node1")}


@pytest.mark.parametrize(
    "kvm, wanted, effective",
    [
        (True, "auto", "kvm"),
        (False, "auto", "qemu"),
        (True, "qemu", "qemu"),
    ],
)
def test_create_reports_facts_and_changes_nothing(host, kvm, wanted, effective):
    host.kvm = kvm
    outs = NodeProvider().create({**PROPS, "virt_type": wanted}).outs
    assert outs["hostname"] == "node1" and outs["init"] == "direct"
    assert outs["virt_type_effective"] == effective
    assert outs["host_key"] == "ssh-ed25519 AAAAFAKE"
    assert host.changes == []


def test_check_requires_a_pinned_key_or_trust_on_first_use():
    conn = {"name": "node1", "address": "192.0.2.1"}
    failures = NodeProvider().check({}, {**PROPS, "connection": conn}).failures
    assert [f.property for f in failures] == ["connection.host_key"]


def test_check_rejects_unknown_virt_type():
    failures = NodeProvider().check({}, {**PROPS, "virt_type": "xen"}).failures
    assert failures[0].property == "virt_type"
