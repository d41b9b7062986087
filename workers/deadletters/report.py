"""What a replay was asked to do (its options) and what one run of it did (its report), as the CLI shows them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.store.archive.actions import FINISHED, RUNNING
from workers.store.archive.outcomes import FAILED_AGAIN, NOT_PUBLISHED


@dataclass(frozen=True)
class ReplayOptions:
    """How fast, how carefully, and how long to wait for outcomes."""

    #: Messages per second; None sends as fast as claims and confirms allow.
    rate: float | None = None
    #: Send this many first, wait for their outcomes, and go on only if they were applied.
    canary: int = 0
    canary_wait: float = 60.0
    #: After the last send, wait this long for outcomes (and, on resume, for in-doubt ones).
    wait: float = 10.0

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "canary": self.canary, "canary_wait": self.canary_wait, "wait": self.wait}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> ReplayOptions:
        return cls(
            rate=values.get("rate"),
            canary=int(values.get("canary") or 0),
            canary_wait=float(values.get("canary_wait", 60.0)),
            wait=float(values.get("wait", 10.0)),
        )


@dataclass(frozen=True)
class Progress:
    action_id: int
    sent: int
    total: int
    taken: int


@dataclass
class ReplayReport:
    """What one run (start or resume) of a replay did, and the action's outcomes so far."""

    action_id: int
    kind: str
    status: str = RUNNING
    note: str | None = None
    #: Records in the frozen set still to do when this run began (in doubt included).
    selected: int = 0
    #: Copies the broker confirmed in this run, resent ones included.
    sent: int = 0
    #: In-doubt messages (claimed, confirm never recorded, no outcome) sent again.
    resent: int = 0
    #: Records another action claimed first, or that were no longer open.
    taken: list[int] = field(default_factory=list)
    not_published: dict[int, str] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    failed_again: list[dict[str, Any]] = field(default_factory=list)
    #: Dead letters matching the selection archived after the cutoff, not counting this replay's own.
    arrived_since: int = 0
    seconds: float = 0.0
    #: Sends per second between the first and the last send of this run.
    achieved_rate: float | None = None

    @property
    def ok(self) -> bool:
        """Finished, everything sent, nothing failed again."""
        return (
            self.status == FINISHED
            and not self.not_published
            and not self.outcomes.get(FAILED_AGAIN)
            and not self.outcomes.get(NOT_PUBLISHED)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "kind": self.kind,
            "status": self.status,
            "note": self.note,
            "selected": self.selected,
            "sent": self.sent,
            "resent": self.resent,
            "taken": self.taken,
            "not_published": [{"dead_letter_id": k, "reason": v} for k, v in sorted(self.not_published.items())],
            "outcomes": self.outcomes,
            "failed_again": self.failed_again,
            "arrived_since": self.arrived_since,
            "seconds": round(self.seconds, 3),
            "achieved_rate": None if self.achieved_rate is None else round(self.achieved_rate, 2),
        }
