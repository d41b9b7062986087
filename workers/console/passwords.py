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


def parse_users(text: str) -> dict[str, User]:
    """`name:role:hash` (or `name:role:-` for a proxy-only user), separated by whitespace or commas."""
    users: dict[str, User] = {}
    for line in text.splitlines():
        for entry in line.split("#", 1)[0].replace(",", " ").split():
            found = _ENTRY.match(entry)
            if found is None:
                raise ValueError(f"a console user entry is not name:role:hash (starts {entry[:12]!r})")
            name, role, stored = found.groups()
            users[name] = User(name, role, None if stored == "-" else stored)
    return users
