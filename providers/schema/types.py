"""What every schema shares: the two model bases, the per-field change class, the value types
(names, addresses, booleans, bounded numbers) and the one translation of pydantic's errors
into today's messages: `cephkvm:pools[1].min_size: what is wrong; how to fix it`."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import typing
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, PydanticUndefined, to_jsonable_python

CHANGES = ("replace", "update", "state")


class Section(BaseModel):
    """A part of the stack config: unknown keys are refused (a typo such as `rolez` must not
    fall back to a default), values are never coerced ("5" is not 5)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Spec(Section):
    """A resource's inputs: every field also says how a change to it is applied (`change`)."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs):
        super().__pydantic_init_subclass__(**kwargs)
        missing = [n for n, f in cls.model_fields.items() if _change(f) not in CHANGES]
        if missing:
            raise TypeError(
                f"{cls.__name__}: give {', '.join(missing)} a change class "
                "(replace, update or state)"
            )


def _change(info) -> str | None:
    return (info.json_schema_extra or {}).get("change")


def field(change: str, default: Any = PydanticUndefined, *, fix: str = "", **kw) -> Any:
    """A schema field: its change class (replace: a new resource; update: host work in
    place; state: a setting that changes no host) and the fix its errors suggest."""
    extra = {"change": change, **({"fix": fix} if fix else {})}
    return Field(default, json_schema_extra=extra, **kw)


def replace(default: Any = PydanticUndefined, **kw) -> Any:
    return field("replace", default, **kw)


def update(default: Any = PydanticUndefined, **kw) -> Any:
    return field("update", default, **kw)


def state(default: Any = PydanticUndefined, **kw) -> Any:
    return field("state", default, **kw)


def hint(default: Any = PydanticUndefined, *, fix: str, **kw) -> Any:
    """A config-only field (no resource's input) with the fix its errors suggest."""
    return Field(default, json_schema_extra={"fix": fix}, **kw)


def classes(model: type[BaseModel], change: str) -> tuple:
    """The names of model's fields of one change class: a provider's REPLACES / UPDATES /
    STATE table."""
    return tuple(n for n, f in model.model_fields.items() if _change(f) == change)


def defaults(model: type[BaseModel]) -> dict:
    """Fields with a default, as the provider's check fills them in (JSON values)."""
    found = {
        n: f.get_default(call_default_factory=True)
        for n, f in model.model_fields.items()
        if not f.is_required()
    }
    return {n: to_jsonable_python(v, exclude_none=True) for n, v in found.items() if v is not None}


# --- validating -------------------------------------------------------------------------


def validate(model: Any, data: Any):
    """model (a model class or a TypeAdapter) from plain data, in JSON mode: a YAML list is a
    tuple and nothing else is coerced."""
    text = json.dumps(data, default=str)
    if isinstance(model, TypeAdapter):
        return model.validate_json(text)
    return model.model_validate_json(text)


def adapter(info) -> TypeAdapter:
    """A TypeAdapter for one field of a model, with its validators and strictness."""
    tp = (
        Annotated.__class_getitem__((info.annotation, *info.metadata))
        if info.metadata
        else info.annotation
    )
    model = _unwrap(info.annotation)
    plain = not (isinstance(model, type) and issubclass(model, BaseModel))
    return TypeAdapter(tp, config=ConfigDict(strict=True) if plain else None)


def sections(root: type[BaseModel], raw: dict) -> tuple[dict, list]:
    """Each of root's fields validated apart, and each item of a list of models apart, so
    one bad pool leaves the rest checked: (values by field, problems). An invalid item is
    None in its list."""
    values, problems = {}, []
    for name in raw:
        if name not in root.model_fields:
            problems.append((str(name), unknown_key(name, tuple(root.model_fields))))
    for name, info in root.model_fields.items():
        if name not in raw:
            continue
        item = _item_model(info.annotation)
        try:
            if item is not None and isinstance(raw[name], list):
                values[name] = tuple(_items(item, raw[name], root, name, problems))
            else:
                values[name] = validate(adapter(info), raw[name])
        except ValidationError as err:
            problems += messages(err, root, (name,))
    return values, problems


def _items(item, values: list, root, name: str, problems: list):
    """Each value as item, or None where it is invalid (so later paths keep their index)."""
    for i, value in enumerate(values):
        try:
            yield validate(item, value)
        except ValidationError as err:
            problems += messages(err, root, (name, i))
            yield None


def _item_model(tp):
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (tuple, list):
        inner = _unwrap(typing.get_args(tp)[0])
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return None


def messages(err: ValidationError, root: type[BaseModel], at: tuple = ()) -> list:
    """(path, message) per error, the path as in config (`pools[1].erasure.k`); `at` is
    where in root the validated value sits."""
    out = []
    for e in err.errors(include_url=False):
        loc = at + tuple(p for p in e["loc"] if p != "[key]")
        out.append((render(loc), _message(e, root, loc)))
    return out


def key(path: str) -> str:
    """A config key path as operators write it: `cephkvm:pools[1].size`."""
    return f"cephkvm:{path}"


def unique(items: tuple, section: str, problems: list, why: str = ""):
    """(index, item) of a validated section's list, skipping invalid (None) items and
    repeated names, each repeat one problem: `cephkvm:vms[1].name: 'a' is listed twice`."""
    seen = set()
    for i, item in enumerate(items):
        if item is None:
            continue
        if item.name in seen:
            problems.append(
                f"{key(f'{section}[{i}].name')}: {item.name!r} is listed twice"
                f"{'; ' + why if why else ''}"
            )
            continue
        seen.add(item.name)
        yield i, item


def unknown_key(name, known: tuple, hint: str = "") -> str:
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    return (
        "unknown key; "
        + (f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}")
        + hint
    )


def render(loc: tuple) -> str:
    text = ""
    for part in loc:
        part = part if isinstance(part, int) else render_key(part)
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def render_key(name) -> str:
    """A key as it appears in a path: a control character in it is shown escaped."""
    return str(name).encode("unicode_escape").decode() if CONTROL.search(str(name)) else str(name)


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _message(e: dict, model, loc: tuple) -> str:
    kind, value = e["type"], e.get("input")
    if kind == "cephkvm":
        return e["msg"]
    if kind == "extra_forbidden":
        parent = _type_at(model, loc[:-1])
        moved = getattr(parent, "renamed", {}).get(loc[-1])
        return moved or unknown_key(
            loc[-1], tuple(_fields(parent)), getattr(parent, "unknown_hint", "")
        )
    fix = _fix_at(model, loc)
    what = {
        "missing": "is required",
        "literal_error": f"{value!r} is not one of {e.get('ctx', {}).get('expected')}",
        "string_type": "must be text (quote it in YAML)",  # not echoed: it may be a secret
        "int_type": f"{value!r} must be a whole number",
        "int_from_float": f"{value!r} must be a whole number",
        "bool_type": f"{value!r} is not a boolean; write true or false",
        "list_type": "must be a list",
        "tuple_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
        "too_short": "must not be empty",
    }.get(kind, e["msg"])
    return f"{what}; {fix}" if fix else what


def _unwrap(tp):
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _fields(tp) -> dict:
    return tp.model_fields if isinstance(tp, type) and issubclass(tp, BaseModel) else {}


def _type_at(model, loc: tuple):
    tp = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int) and typing.get_origin(tp) in (tuple, list):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif part in _fields(tp):
            tp = _fields(tp)[part].annotation
        else:
            return None
    return _unwrap(tp)


def _fix_at(model, loc: tuple) -> str:
    """The fix of the innermost named field on the error's path."""
    for end in range(len(loc), 0, -1):
        if isinstance(loc[end - 1], int):
            continue
        info = _fields(_type_at(model, loc[: end - 1])).get(loc[end - 1])
        if info is not None:
            return (info.json_schema_extra or {}).get("fix", "")
    return ""


def fail(message: str):
    """Raise a validation error whose message is exactly `message` (braces included)."""
    raise PydanticCustomError("cephkvm", "{text}", {"text": message})


# --- value types --------------------------------------------------------------------------


def checked(base: type, check, schema: dict) -> Any:
    """base whose values `check` accepts (it returns a message when it refuses one)."""

    def run(value):
        problem = check(value)
        if problem:
            fail(problem)
        return value

    return Annotated[base, AfterValidator(run), WithJsonSchema(schema)]


def text(pattern: str, what: str) -> Any:
    """A string matching the whole of pattern; what says what it must be (the fix)."""
    rx = re.compile(pattern)
    return checked(
        str,
        lambda v: None if rx.fullmatch(v) else f"{v!r} {what}",
        {"type": "string", "pattern": f"^(?:{pattern})$"},
    )


def whole(low: int, high: int | None = None, unit: str = "") -> Any:
    """A whole number from low to high (bool is not one)."""
    span = f"from {low} to {high}" if high is not None else f">= {low}"
    schema = {"type": "integer", "minimum": low, **({"maximum": high} if high else {})}
    return checked(
        int,
        lambda v: (
            None
            if low <= v and (high is None or v <= high)
            else f"{v!r} must be a whole number {span}{unit}"
        ),
        schema,
    )


# `pulumi config set` stores strings: "true"/"false" are booleans too, nothing else is.
# `no`, `off`, `0` are refused rather than guessed: opt-ins decide whether data may go.
def _boolean(value):
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


Bool = Annotated[
    bool,
    BeforeValidator(_boolean),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"enum": ["true", "false"]}]}),
]

# Addresses: IP literals or real host names, never an IPv6 scope id (`%...` passes Python's
# own parsers with any text after it, newlines included).
HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*")


def is_ip(value) -> bool:
    if not isinstance(value, str) or "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def is_address(value) -> bool:
    """An IP literal or a host name; `10.20.10.300` is neither (its last label is digits)."""
    if is_ip(value):
        return True
    return (
        isinstance(value, str)
        and bool(HOSTNAME.fullmatch(value))
        and not value.rsplit(".", 1)[-1].isdigit()
    )


def _parses(parse, value: str, slash: bool = True) -> bool:
    if "%" in value or (slash and "/" not in value):
        return False
    try:
        parse(value)
        return True
    except ValueError:
        return False


def is_cidr(value) -> bool:
    return isinstance(value, str) and _parses(
        lambda v: ipaddress.ip_network(v, strict=False), value
    )


def is_interface(value) -> bool:
    """An address with its prefix, such as 10.20.10.31/24."""
    return isinstance(value, str) and _parses(ipaddress.ip_interface, value)


def in_network(address: str, cidr: str) -> bool | None:
    """Whether an IP literal lies in cidr; None when address is a host name."""
    if not is_ip(address) or not is_cidr(cidr):
        return None
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)


Address = checked(
    str,
    lambda v: None if is_address(v) else f"{v!r} is not an IP address or host name",
    {"type": "string"},
)
IP = checked(str, lambda v: None if is_ip(v) else f"{v!r} is not an IP address", {"type": "string"})
Cidr = checked(
    str,
    lambda v: None if is_cidr(v) else f"{v!r} is not a network in CIDR form such as 10.204.10.0/24",
    {"type": "string"},
)
Interface = checked(
    str,
    lambda v: (
        None if is_interface(v) else f"{v!r} must be an address with prefix, such as 10.20.10.31/24"
    ),
    {"type": "string"},
)
DevicePath = text(r"/dev/[^\s]+", "must be an absolute device path such as /dev/disk/by-id/...")
IfName = text(
    r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}",
    "must be an interface name of at most 15 characters, such as br0",
)
NodeName = text(
    r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?",
    "must be a short lower-case name (letters, digits, dashes)",
)
PoolName = text(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", "is not a pool name (letters, digits, _ . -)")
