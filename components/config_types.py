"""Value checks every config section shares. Each appends one problem naming the key path,
what is wrong and the fix, and returns a usable value so checking goes on."""
from __future__ import annotations

# `pulumi config set` stores strings: "true"/"false" are booleans too, nothing else is.
BOOLEAN_TEXT = {"true": True, "false": False}


def key(path: str) -> str:
    return f"cephkvm:{path}"


def boolean(section: dict, name: str, path: str, problems: list, default: bool = False) -> bool:
    """section[name] as a real boolean: true/false only. `no`, `off`, `0` or "False" are
    refused rather than guessed, since opt-ins decide whether data may be deleted."""
    value = section.get(name, default) if isinstance(section, dict) else default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in BOOLEAN_TEXT:
        return BOOLEAN_TEXT[value]
    problems.append(f"{key(path)}: {value!r} is not a boolean; write true or false")
    return default
