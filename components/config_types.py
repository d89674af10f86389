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


def unknown_keys(section, known: tuple, path: str, problems: list, hint: str = "") -> None:
    """One problem per key that is not in known, with the closest known key: a typo such
    as `rolez` must not silently fall back to a default (every role)."""
    import difflib
    if not isinstance(section, dict):
        return
    for name in section:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        fix = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
        problems.append(f"{key(f'{path}.{name}' if path else name)}: unknown key; {fix}{hint}")
