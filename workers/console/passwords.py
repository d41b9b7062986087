"""Console users and their passwords, kept only as scrypt hashes (hashlib; no extra crypto dependency)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

_N, _R, _P = 2**14, 8, 1
_ENTRY = re.compile(r"^([^:\s]+):([a-z]+):(\S+)$")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    #: `scrypt$n$r$p$salt$hash` (base64), or None for a user who only ever comes through the proxy.
    password_hash: str | None


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024)
    encode = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        given = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 1024 * 1024,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(given, expected)


def is_password_hash(stored: str) -> bool:
    """Whether `stored` has the shape `hash_password` writes (so a pasted password or a typo is caught at start)."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(part.isdigit() for part in parts[1:4]):
        return False
    try:
        return all(base64.b64decode(part, validate=True) for part in parts[4:])
    except ValueError:
        return False


def parse_users(text: str, *, source: str) -> dict[str, User]:
    """`name:role:hash` (or `name:role:-` for a proxy-only user), separated by whitespace or commas.

    A malformed entry is refused with where it is (`source`, line) and never echoes a hash or password."""
    users: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        for place, entry in enumerate(line.split("#", 1)[0].replace(",", " ").split(), start=1):
            found = _ENTRY.match(entry)
            if found is None:  # not echoed: a misplaced password must not reach a log
                raise ValueError(f"{source} line {number}: entry {place} is not name:role:hash")
            name, role, stored = found.groups()
            if stored != "-" and not is_password_hash(stored):
                raise ValueError(
                    f"{source} line {number}: {name}'s password is not a hash from `flowfleet console --hash-password`"
                )
            users[name] = User(name, role, None if stored == "-" else stored)
    return users
