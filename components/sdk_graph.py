"""Two per-resource costs of the Python SDK, made constant: the dependency cycle check and
the lookup of a resource class's property types.

pulumi 3.260 checks each dependency a resource declares (its `depends_on` and every
resource behind its inputs) for a cycle by walking everything that dependency depends on;
a VM's walk covers the whole Ceph layer, the destroy guard's every resource. Here each
resource keeps a level above those it depends on. A dependency on a lower level cannot
close a cycle, nor can one from a resource nothing depends on yet; only the rest take the
SDK's walk, so a cycle is still found and reported by the SDK's own error.

The SDK also rebuilds a resource class's property types (`typing.get_type_hints`) for each
resource it registers; a class's types are fixed once it exists, so they are read once.

Installed only over the SDK version this was written against (as components/sdk_drain.py).
"""

from __future__ import annotations

import os

from pulumi import _types, _version
from pulumi.runtime import resource_cycle_breaker as _cycles
from pulumi.runtime import rpc

FOR_VERSION = "3.260.0"

_level: dict = {}  # resource -> a level above each resource it depends on
_dependents: dict = {}  # resource -> the resources that depend on it


def declare_dependency(from_resource, to_resource) -> bool:
    """The SDK's `declare_dependency`: False, and nothing recorded, if the dependency would
    close a cycle."""
    if from_resource is to_resource:
        return False
    if _level.get(from_resource, 0) <= _level.get(to_resource, 0) and _dependents.get(
        from_resource
    ):
        if _cycles._reachable(from_resource=to_resource, to_resource=from_resource):
            return False
    _record(from_resource, to_resource)
    return True


def _record(from_resource, to_resource) -> None:
    deps = getattr(from_resource, _cycles._DEPENDENCIES_PROPERTY, None)
    if deps is None:
        deps = set()
        setattr(from_resource, _cycles._DEPENDENCIES_PROPERTY, deps)
    deps.add(to_resource)  # in place: the SDK copies the whole set for each dependency
    _dependents.setdefault(to_resource, set()).add(from_resource)
    _raise_level(from_resource, _level.get(to_resource, 0) + 1)


def _raise_level(resource, level: int) -> None:
    """Keep every dependent above what it depends on (the graph has no cycle, so this ends)."""
    todo = [(resource, level)]
    while todo:
        res, lv = todo.pop()
        if _level.get(res, 0) >= lv:
            continue
        _level[res] = lv
        todo.extend((d, lv + 1) for d in _dependents.get(res, ()))


_stock_resource_types = _types.resource_types
_resource_types: dict = {}


def resource_types(resource_cls: type) -> dict:
    types = _resource_types.get(resource_cls)
    if types is None:
        types = _resource_types[resource_cls] = _stock_resource_types(resource_cls)
    return dict(types)


def install() -> None:
    if _version._VERSION == FOR_VERSION and os.environ.get("CEPHKVM_SDK_GRAPH") != "stock":
        rpc.declare_dependency = declare_dependency
        _types.resource_types = resource_types
