"""What every console request shares: settings, the archive's engine, who may do what, templates, running replays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from sqlalchemy import Engine

from workers.console.auth import Authenticator
from workers.console.config import ConsoleConfig
from workers.console.jobs import ReplayJobs
from workers.ownership import Owner
from workers.ownership import load as load_ownership
from workers.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


@dataclass
class Console:
    settings: Settings
    config: ConsoleConfig
    engine: Engine
    authenticator: Authenticator
    templates: Environment
    jobs: ReplayJobs

    @property
    def secret(self) -> str:
        return self.config.secret.get_secret_value()


def utc(moment: datetime | None) -> Markup:
    """A time in UTC, marked up so that the page's script can add the reader's local time beside it."""
    if moment is None:
        return Markup("&ndash;")
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    aware = aware.astimezone(UTC)
    return Markup('<time datetime="{}">{} UTC</time>').format(aware.isoformat(), aware.strftime("%Y-%m-%d %H:%M:%S"))


def plain(value: Any, unset: str = "\u2013") -> str:
    """A selection's, option's or count's value as text: lists by commas, a (name, value) pair as name=value."""
    if value is None:
        return unset
    if isinstance(value, dict):
        return ", ".join(f"{name}={plain(item)}" for name, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join("=".join(map(str, v)) if isinstance(v, list | tuple) else plain(v) for v in value)
    return str(value)


def query(values: dict[str, Any], **changes: Any) -> str:
    """A query string from the current selection with some values changed (None drops one)."""
    merged = {k: v for k, v in ({**values, **changes}).items() if v not in (None, "")}
    return "?" + urlencode(merged) if merged else ""


def templates() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True
    )
    environment.filters["utc"] = utc
    environment.filters["plain"] = plain
    environment.globals["query"] = query
    environment.globals["escape"] = escape
    environment.globals["owner_of"] = owner_of
    return environment


def owner_of(flow: str, stage: str, fingerprint: str | None = None) -> Owner:
    """A failure's owner (ops/ownership.toml), for the group and record pages."""
    return load_ownership().of_failure(flow=flow, stage=stage, fingerprint=fingerprint)
