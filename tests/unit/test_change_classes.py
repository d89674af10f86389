"""Every input field of every provider says how a change to it is applied: a replace, an
update on the host, or state only. A field in none of them would preview as no change."""
import importlib
import os
import pkgutil
import re

import pytest

import providers
from providers import base

pytestmark = pytest.mark.unit

FIELD = re.compile(r"#\s([a-z_][a-z0-9_]*(?:,\s*[a-z_][a-z0-9_]*)*)\s+\S")


def schema_fields(source: str) -> list[str]:
    """Field names from the module's `# --- input schema` block (outputs excluded)."""
    block = source.split("# --- input schema", 1)[1].splitlines()[1:]
    fields = []
    for line in block:
        if not line.startswith("#") or line.startswith("# outputs"):
            break
        match = FIELD.match(line)
        if match:
            fields += [f.strip() for f in match.group(1).split(",")]
    return fields


PROVIDERS = [m.name for m in pkgutil.iter_modules(providers.__path__)
             if hasattr(importlib.import_module(f"providers.{m.name}"), "REPLACES")]


@pytest.mark.parametrize("name", PROVIDERS)
def test_every_schema_field_has_a_change_class(name):
    mod = importlib.import_module(f"providers.{name}")
    if hasattr(mod, "INPUTS"):  # a pydantic schema: its classes are the tables
        return check_model_tables(mod)
    source = open(mod.__file__).read()
    if re.search(r"# --- input schema -*\n# see providers/", source):
        shared = source.split("# see ", 1)[1].split(":", 1)[0]  # a schema shared with it
        source = open(os.path.join(os.path.dirname(providers.__path__[0]), shared)).read()
    state = set(getattr(mod, "STATE", ())) | set(base.STATE)
    classes = [set(mod.REPLACES), set(mod.UPDATES), state]
    fields = schema_fields(source)
    assert fields, "the schema block lists no field"
    missing = [f for f in fields if not any(f in c for c in classes)]
    assert not missing, f"{name}: no replace/update/state class for {missing}"
    twice = [f for f in fields if sum(f in c for c in classes) > 1]
    assert not twice, f"{name}: {twice} in more than one class"


def check_model_tables(mod):
    fields = set(mod.INPUTS.model_fields)
    tables = [set(mod.REPLACES), set(mod.UPDATES), set(mod.STATE)]
    assert set().union(*tables) == fields
    assert sum(len(t) for t in tables) == len(fields), "a field in more than one class"


def test_a_schema_field_without_a_change_class_is_refused_when_it_is_written():
    from providers.schema.types import Spec
    with pytest.raises(TypeError, match="give size a change class"):
        type("Broken", (Spec,), {"__annotations__": {"size": int}, "size": 1})


def test_a_bridge_timeout_change_is_an_update_of_the_state_alone():
    from providers import kvm_bridge
    olds = {"node": "n1", "name": "br0", "connection": {"name": "n1"}, "confirm_timeout": 30,
            "interfaces": ["eth0"], "effective": {"addresses": []}, "network_active": True}
    news = {**olds, "confirm_timeout": 60}
    news.pop("effective"), news.pop("network_active")
    diff = kvm_bridge.KvmBridgeProvider().diff("id", olds, news)
    assert diff.changes and not diff.replaces
    result = kvm_bridge.KvmBridgeProvider().update("id", olds, news)  # no session: no host
    assert result.outs["confirm_timeout"] == 60 and result.outs["effective"] == {"addresses": []}
