"""Value checks every config section shares. Each appends one problem naming the key path,
what is wrong and the fix, and returns a usable value so checking goes on."""
from __future__ import annotations

import ipaddress
import re

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


# --- addresses: IP literals or real host names, never an IPv6 scope id (`%...` passes
# Python's own parsers with any text after it, newlines included) ----------------------

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
    return (isinstance(value, str) and bool(HOSTNAME.fullmatch(value))
            and not value.rsplit(".", 1)[-1].isdigit())


def is_cidr(value) -> bool:
    if not isinstance(value, str) or "%" in value or "/" not in value:
        return False
    try:
        ipaddress.ip_network(value, strict=False)
        return True
    except ValueError:
        return False


def is_interface(value) -> bool:
    """An address with its prefix, such as 10.20.10.31/24."""
    if not isinstance(value, str) or "%" in value or "/" not in value:
        return False
    try:
        ipaddress.ip_interface(value)
        return True
    except ValueError:
        return False


def in_network(address: str, cidr: str) -> bool | None:
    """Whether an IP literal lies in cidr; None when address is a host name."""
    if not is_ip(address) or not is_cidr(cidr):
        return None
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)


# --- control characters: nothing that ends up in a file may carry one ------------------

CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def control_characters(raw, problems: list, free=(), path: str = "") -> None:
    """One problem per string value (or key) holding a control character: a newline in a
    mountpoint, an option name or an authorized key writes extra lines into fstab,
    ceph.conf or authorized_keys. Paths matching a pattern in `free` (cloud-init user data
    and commands, where newlines are content) are not checked. Values are not echoed:
    some are secrets."""
    if any(re.fullmatch(pattern, path) for pattern in free):
        return
    if isinstance(raw, dict):
        for k, v in raw.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and CONTROL.search(k):
                problems.append(f"{key(sub)}: the key holds a control character (a newline, "
                                "a tab, ...); remove it")
            control_characters(v, problems, free, sub)
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            control_characters(v, problems, free, f"{path}[{i}]")
    elif isinstance(raw, str) and CONTROL.search(raw):
        problems.append(f"{key(path)}: holds a control character (a newline, a tab, ...); "
                        "values that end up in files must be one line")
