"""The SDK's cycle check and property-type lookup, made constant per resource: the same
answers as the SDK's own, with the SDK's walk taken only where a cycle is possible."""

import os
import random

import pytest
from pulumi import _types
from pulumi.runtime import resource_cycle_breaker as sdk_cycles
from pulumi.runtime import rpc

from components import sdk_graph

pytestmark = pytest.mark.unit


class Res:
    """Stands for a pulumi.Resource: the check only needs identity and attributes."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


@pytest.fixture
def walks(monkeypatch):
    count = []
    stock = sdk_cycles._reachable

    def counted(**kw):
        count.append(kw)
        return stock(**kw)

    monkeypatch.setattr(sdk_cycles, "_reachable", counted)
    return count


def test_dependencies_declared_in_creation_order_take_no_walk(walks):
    mon, mgr, osd, vm = (Res(n) for n in ("mon", "mgr", "osd", "vm"))
    for frm, to in [(mgr, mon), (osd, mon), (osd, mgr), (vm, osd), (vm, mon)]:
        assert sdk_graph.declare_dependency(frm, to)
    assert walks == []
    assert sdk_cycles._deps(vm) == {osd, mon}
    assert sdk_cycles._reachable(from_resource=vm, to_resource=mon)


def test_a_cycle_is_refused_and_not_recorded(walks):
    a, b, c = Res("a"), Res("b"), Res("c")
    assert sdk_graph.declare_dependency(a, b)
    assert sdk_graph.declare_dependency(b, c)
    assert not sdk_graph.declare_dependency(c, a)
    assert walks  # only here can a cycle close: c is below a, and b depends on c
    assert sdk_cycles._deps(c) == set()
    assert not sdk_graph.declare_dependency(a, a)


def _stock_declare(frm, to):
    if sdk_cycles._reachable(from_resource=to, to_resource=frm):
        return False
    sdk_cycles._add_dep(frm, to)
    return True


@pytest.mark.parametrize("seed", range(40))
def test_same_answers_as_the_sdk_on_random_graphs(seed):
    rnd = random.Random(seed)
    ours = [Res(f"r{i}") for i in range(12)]
    stock = [Res(f"s{i}") for i in range(12)]
    for _ in range(60):
        i, j = rnd.randrange(12), rnd.randrange(12)
        expected = _stock_declare(stock[i], stock[j])
        assert sdk_graph.declare_dependency(ours[i], ours[j]) == expected, (seed, i, j)
    for mine, theirs in zip(ours, stock):
        assert {r.name[1:] for r in sdk_cycles._deps(mine)} == {
            r.name[1:] for r in sdk_cycles._deps(theirs)
        }


def test_a_class_types_are_read_once(monkeypatch):
    calls = []

    def stock(cls):
        calls.append(cls)
        return {"size": int}

    monkeypatch.setattr(sdk_graph, "_stock_resource_types", stock)
    monkeypatch.setattr(sdk_graph, "_resource_types", {})
    first = sdk_graph.resource_types(Res)
    first["size"] = str  # a caller's change stays its own
    assert sdk_graph.resource_types(Res) == {"size": int}
    assert calls == [Res]


def test_installed_only_over_the_sdk_it_was_written_for(monkeypatch):
    monkeypatch.setattr(rpc, "declare_dependency", rpc.declare_dependency)
    monkeypatch.setattr(_types, "resource_types", _types.resource_types)
    stock = rpc.declare_dependency
    monkeypatch.setattr(sdk_graph._version, "_VERSION", "9.9.9")
    sdk_graph.install()
    assert rpc.declare_dependency is stock
    monkeypatch.setattr(sdk_graph._version, "_VERSION", sdk_graph.FOR_VERSION)
    sdk_graph.install()
    assert rpc.declare_dependency is sdk_graph.declare_dependency
    assert _types.resource_types is sdk_graph.resource_types


def test_the_pinned_sdk_is_the_one_it_was_written_for():
    """Bumping pulumi: check the SDK's resource_cycle_breaker and resource_types, then
    FOR_VERSION."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "requirements.txt")) as f:
        pins = dict(line.strip().split("==", 1) for line in f if "==" in line)
    assert pins["pulumi"] == sdk_graph.FOR_VERSION
