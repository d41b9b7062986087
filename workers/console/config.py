"""The console's own settings (FLOWFLEET_CONSOLE_*), and the rule that it never listens beyond loopback unguarded."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers.console.passwords import User, parse_users
from workers.settings import ConfigurationError

ROLES = ("viewer", "operator", "admin")


class ConsoleConfig(BaseSettings):
    """Where the console listens and who may use it. Every field maps to `FLOWFLEET_CONSOLE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="FLOWFLEET_CONSOLE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8700
    #: `name:role:scrypt$…` entries separated by whitespace or commas (`flowfleet console --hash-password`).
    users: SecretStr | None = None
    #: A file of the same entries, one a line (`#` comments allowed).
    users_file: Path | None = None
    #: A reverse proxy's header naming the authenticated user, trusted only from `trusted_proxies`.
    proxy_header: str | None = None
    trusted_proxies: str = ""
    #: The role of a proxy-authenticated user who is not listed in `users`.
    proxy_role: str = "viewer"
    #: On loopback with no authentication configured, the local user has this role.
    local_role: str = "operator"
    #: Signs the CSRF tokens; random per process unless given (several replicas behind one proxy need one).
    secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)))

    def known_users(self) -> dict[str, User]:
        """The users from FLOWFLEET_CONSOLE_USERS, then the file's (a name in both: the file's entry)."""
        sources = [("FLOWFLEET_CONSOLE_USERS", "" if self.users is None else self.users.get_secret_value())]
        if self.users_file is not None:
            try:
                sources.append((f"FLOWFLEET_CONSOLE_USERS_FILE {self.users_file}", self.users_file.read_text("utf-8")))
            except (OSError, UnicodeDecodeError) as error:
                why = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
                raise ConfigurationError(f"cannot read FLOWFLEET_CONSOLE_USERS_FILE {self.users_file}: {why}") from None
        users: dict[str, User] = {}
        try:
            for source, text in sources:
                users |= parse_users(text, source=source)
        except ValueError as error:
            raise ConfigurationError(f"console users: {error}") from None
        for user in users.values():
            if user.role not in ROLES:
                raise ConfigurationError(f"console user {user.name!r} has role {user.role!r}; use one of {ROLES}")
        return users

    def proxies(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        try:
            return [ipaddress.ip_network(part, strict=False) for part in self.trusted_proxies.replace(",", " ").split()]
        except ValueError as error:
            raise ConfigurationError(f"FLOWFLEET_CONSOLE_TRUSTED_PROXIES: {error}") from None

    @property
    def authenticates(self) -> bool:
        """Whether anyone must prove who they are: configured users, or a proxy header from trusted proxies."""
        return bool(self.known_users()) or bool(self.proxy_header and self.proxies())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(config: ConsoleConfig) -> None:
    """Refuse to listen beyond loopback when nobody has to authenticate."""
    for role in (config.proxy_role, config.local_role):
        if role not in ROLES:
            raise ConfigurationError(f"console role {role!r} is not one of {', '.join(ROLES)}")
    if not is_loopback(config.host) and not config.authenticates:
        raise ConfigurationError(
            f"the console will not listen on {config.host} without authentication: set FLOWFLEET_CONSOLE_USERS "
            "(or _USERS_FILE), or FLOWFLEET_CONSOLE_PROXY_HEADER with FLOWFLEET_CONSOLE_TRUSTED_PROXIES"
        )
