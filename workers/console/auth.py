"""Who is asking and what they may do: Basic auth against hashed passwords, a trusted proxy's header, or loopback.

Roles rank viewer < operator < admin: a viewer reads, an operator replays, repairs, discards, restores and
pauses, an admin also unmasks and purges. The name found here is the actor the audit log records.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import ipaddress
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from workers.console.config import ROLES, ConsoleConfig
from workers.console.passwords import User, verify_password

VIEWER, OPERATOR, ADMIN = ROLES


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class Unauthenticated(Exception):
    """No credentials, or wrong ones: the browser is asked for a user and password."""


class Forbidden(Exception):
    """Authenticated, but the role does not allow this."""


def local_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "local"


class Authenticator:
    """Decides each request's principal from the console's configuration (read once, at start)."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.users: dict[str, User] = config.known_users()
        self.proxy_header = config.proxy_header.lower() if config.proxy_header else None
        self.proxies = config.proxies()
        self.proxy_role = config.proxy_role
        self.local = None if config.authenticates else Principal(local_user(), config.local_role)

    def principal(self, request: HTTPConnection) -> Principal:
        if self.local is not None:
            return self.local
        if self.proxy_header and request.client is not None and self._trusted(request.client.host):
            name = request.headers.get(self.proxy_header)
            if name:
                user = self.users.get(name)
                return Principal(name, user.role if user else self.proxy_role)
        return self._basic(request.headers.get("authorization", ""))

    def _trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.proxies)

    def _basic(self, header: str) -> Principal:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise Unauthenticated
        try:
            name, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated from None
        user = self.users.get(name)
        if not sep or user is None or user.password_hash is None or not _verified(password, user.password_hash):
            raise Unauthenticated
        return Principal(user.name, user.role)


def _verified(password: str, stored: str) -> bool:
    """scrypt is slow on purpose and a browser sends Basic credentials with every request: remember a
    success by a digest of the pair (never the password itself)."""
    proof = hashlib.sha256(f"{stored}\0{password}".encode()).hexdigest()
    if proof in _VERIFIED:
        return True
    if not verify_password(password, stored):
        return False
    if len(_VERIFIED) > 256:
        _VERIFIED.clear()
    _VERIFIED.add(proof)
    return True


_VERIFIED: set[str] = set()
