"""Who owns each failure mode, read from ops/ownership.toml: configuration shared by the CLI, console and alerts."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

#: The decisions an owner can hold over a failure: replay after a fix, edit and replay, discard or pause,
#: hand to the team that owns the cause.
DECISIONS = ("retry", "repair", "suppress", "escalate")
#: The shipped file, next to the package in a checkout; FLOWFLEET_OWNERSHIP_FILE points elsewhere.
DEFAULT_FILE = Path(__file__).resolve().parents[1] / "ops" / "ownership.toml"
KINDS = ("flows", "systems", "stages", "services", "groups")


class OwnershipError(Exception):
    """The ownership file is missing, malformed, or names a team it does not define."""


@dataclass(frozen=True)
class Owner:
    """The team that owns a failure mode, how to reach it, and what it may decide."""

    team: str
    name: str
    contact: str
    decides: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"team": self.team, "name": self.name, "contact": self.contact, "decides": list(self.decides)}

    def text(self) -> str:
        return f"{self.name} ({self.contact}); decides: {', '.join(self.decides)}"


@dataclass(frozen=True)
class Ownership:
    """Every owner the file names, by kind (flows, systems, stages, services, groups) and key."""

    owners: dict[str, dict[str, Owner]]

    def of(self, kind: str, key: str) -> Owner | None:
        return self.owners.get(kind, {}).get(key)

    def of_failure(self, *, flow: str, stage: str, fingerprint: str | None = None, system: str | None = None) -> Owner:
        """A dead letter's or group's owner: its group's if it has one, its downstream system's for a
        delivery, its stage's, else its flow's (the integration team when nothing names one)."""
        for kind, key in (("groups", fingerprint), ("systems", system if stage == "delivery" else None)):
            if key and (found := self.of(kind, key)):
                return found
        return self.of("stages", stage) or self.of("flows", flow) or self.fallback()

    def owners_by_team(self) -> dict[str, list[str]]:
        """Each team and what it owns (`kind.key`), for routing checks and the review report."""
        teams: dict[str, list[str]] = {}
        for kind, entries in self.owners.items():
            for key, owner in entries.items():
                teams.setdefault(owner.team, []).append(f"{kind}.{key}")
        return teams

    def fallback(self) -> Owner:
        return self.of("stages", "handler") or Owner("unowned", "nobody", "-", ())

    def team_label(self, kind: str, label: str) -> str:
        """The `team` label of an alert about `kind` (keyed by `$labels.<label>`): a constant when every
        entry has the same team, else a Prometheus template choosing by the label."""
        entries = self.owners[kind]
        teams = {owner.team for owner in entries.values()}
        if len(teams) == 1:
            return teams.pop()
        choices = "".join(
            f'{{{{ {"if" if i == 0 else "else if"} eq $labels.{label} "{key}" }}}}{owner.team}'
            for i, (key, owner) in enumerate(sorted(entries.items()))
        )
        return f"{choices}{{{{ else }}}}{self.fallback().team}{{{{ end }}}}"


def parse(data: dict[str, Any]) -> Ownership:
    teams = data.get("teams", {})
    owners: dict[str, dict[str, Owner]] = {}
    for kind in KINDS:
        owners[kind] = {}
        for key, entry in data.get(kind, {}).items():
            team = entry.get("team")
            if team not in teams:
                raise OwnershipError(f"{kind}.{key}: team {team!r} is not defined under [teams]")
            decides = tuple(entry.get("decides", ()))
            if unknown := set(decides) - set(DECISIONS):
                raise OwnershipError(f"{kind}.{key}: unknown decision(s) {sorted(unknown)}; known: {DECISIONS}")
            owners[kind][key] = Owner(team, teams[team]["name"], teams[team]["contact"], decides)
    return Ownership(owners)


@cache
def load(path: Path | None = None) -> Ownership:
    """The ownership file at `path`, FLOWFLEET_OWNERSHIP_FILE, or the shipped one."""
    where = path or Path(os.environ.get("FLOWFLEET_OWNERSHIP_FILE") or DEFAULT_FILE)
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise OwnershipError(f"cannot read the ownership file {where}: {error}") from error
    return parse(data)
