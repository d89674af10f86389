"""SHA-512 crypt ($6$), the hash cloud-init hands to `chpasswd -e`, so a VM's password never
sits in its seed in plain text. Written here because Python's `crypt` module is gone in 3.13;
the unit tier checks it against the system's crypt where there is one."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
HASHED = re.compile(r"\$(1|2a|2y|5|6)(\$.+){2}")  # what cloud-init takes as already hashed
# The digest's bytes in the order the encoding takes them, three at a time.
ORDER = [
    (0, 21, 42),
    (22, 43, 1),
    (44, 2, 23),
    (3, 24, 45),
    (25, 46, 4),
    (47, 5, 26),
    (6, 27, 48),
    (28, 49, 7),
    (50, 8, 29),
    (9, 30, 51),
    (31, 52, 10),
    (53, 11, 32),
    (12, 33, 54),
    (34, 55, 13),
    (56, 14, 35),
    (15, 36, 57),
    (37, 58, 16),
    (59, 17, 38),
    (18, 39, 60),
    (40, 61, 19),
    (62, 20, 41),
]


def generate() -> str:
    """24 characters with every class a password policy may ask for (the Ceph dashboard's,
    PAM's), none a shell or a YAML file would mangle."""
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_.+"]
    chars = [secrets.choice(c) for c in classes]
    chars += [secrets.choice("".join(classes)) for _ in range(20)]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def hashed(password: str, salt: str | None = None) -> str:
    """password as cloud-init should get it: hashed already stays as it is."""
    if HASHED.fullmatch(password):
        return password
    salt = salt or "".join(secrets.choice(ITOA64) for _ in range(16))
    return f"$6${salt}${_encode(_digest(password.encode(), salt.encode()))}"


def _digest(pw: bytes, salt: bytes, rounds: int = 5000) -> bytes:
    h = hashlib.sha512
    b = h(pw + salt + pw).digest()
    a = h(pw + salt)
    a.update((b * (len(pw) // 64 + 1))[: len(pw)])
    n = len(pw)
    while n:
        a.update(b if n & 1 else pw)
        n >>= 1
    a = a.digest()
    p = (h(pw * len(pw)).digest() * (len(pw) // 64 + 1))[: len(pw)]
    s = (h(salt * (16 + a[0])).digest() * (len(salt) // 64 + 1))[: len(salt)]
    c = a
    for r in range(rounds):
        step = (
            (p if r & 1 else c)
            + (s if r % 3 else b"")
            + (p if r % 7 else b"")
            + (c if r & 1 else p)
        )
        c = h(step).digest()
    return c


def _encode(c: bytes) -> str:
    out = []
    for i, j, k in ORDER:
        out.append(_b64((c[i] << 16) | (c[j] << 8) | c[k], 4))
    out.append(_b64(c[63], 2))
    return "".join(out)


def _b64(w: int, n: int) -> str:
    chars = []
    for _ in range(n):
        chars.append(ITOA64[w & 0x3F])
        w >>= 6
    return "".join(chars)
