"""Every input field of every provider says how a change to it is applied: a replace, an
update on the host, or state only. A field in none of them would preview as no change."""

import importlib
import pkgutil

import pytest

import providers
from providers import base

pytestmark = pytest.mark.unit

PROVIDERS = [
    m.name
    for m in pkgutil.iter_modules(providers.__path__)
    if hasattr(importlib.import_module(f"providers.{m.name}"), "REPLACES")
]


@pytest.mark.parametrize("name", PROVIDERS)
def test_every_schema_field_has_one_change_class(name):
    """The tables are the schema's (providers/schema/): every field in exactly one."""
    mod = importlib.import_module(f"providers.{name}")
    fields = set(mod.INPUTS.model_fields)
    tables = [set(mod.REPLACES), set(mod.UPDATES), set(mod.STATE)]
    assert set().union(*tables) == fields
    assert sum(len(t) for t in tables) == len(fields), "a field in more than one class"
    assert not fields & set(base.STATE), "base.STATE fields are every provider's"


def test_a_schema_field_without_a_change_class_is_refused_when_it_is_written():
    from providers.schema.types import Spec

    with pytest.raises(TypeError, match="give size a change class"):
        type("Broken", (Spec,), {"__annotations__": {"size": int}, "size": 1})


def test_a_bridge_timeout_change_is_an_update_of_the_state_alone():
    from providers import kvm_bridge

    olds = {
        "node": "n1",
        "name": "br0",
        "connection": {"name": "n1"},
        "confirm_timeout": 30,
        "interfaces": ["eth0"],
        "effective": {"addresses": []},
        "network_active": True,
    }
    news = {**olds, "confirm_timeout": 60}
    news.pop("effective"), news.pop("network_active")
    diff = kvm_bridge.KvmBridgeProvider().diff("id", olds, news)
    assert diff.changes and not diff.replaces
    result = kvm_bridge.KvmBridgeProvider().update("id", olds, news)  # no session: no host
    assert result.outs["confirm_timeout"] == 60 and result.outs["effective"] == {"addresses": []}


def _provider(mod):
    return next(
        v
        for v in vars(mod).values()
        if isinstance(v, type)
        and issubclass(v, base.Provider)
        and v is not base.Provider
        and v.__module__ == mod.__name__
    )


@pytest.mark.parametrize(
    "name", [n for n in PROVIDERS if importlib.import_module(f"providers.{n}").STATE]
)
def test_a_change_of_state_fields_alone_touches_no_host(name, monkeypatch):
    """A timeout or an opt-in changed: up records it and opens no connection (the provider's
    own update is not called; it would need a session for the missing inputs)."""
    mod = importlib.import_module(f"providers.{name}")

    def no_host(*a, **kw):
        raise AssertionError("a session was opened")

    monkeypatch.setattr(base, "session", no_host)
    olds = {"connection": {"name": "n1"}, "kept": "output", "network_active": True}
    news = {"connection": {"name": "n1"}}
    for field in mod.STATE:
        olds[field], news[field] = "old", "new"
    result = _provider(mod)().update("id", olds, news)
    assert result.outs == {**olds, **news}
