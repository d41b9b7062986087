"""The mark a replayed copy carries, so its outcome and any new dead letter find their way back to the replay.

A replayed copy is published with `x-flowfleet-replay-of: <dead letter id>` and
`x-flowfleet-replay-action: <action id>`. The headers ride in the Dramatiq message's kwargs, so they
survive delayed retries; the pipeline records `applied`/`duplicate` against the action, and a copy
that fails again carries them into its dead letter, whose archive key they become part of: the same
bytes failing again after a replay are a new record linked to the one replayed, not an ignored insert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REPLAY_OF_HEADER = "x-flowfleet-replay-of"
REPLAY_ACTION_HEADER = "x-flowfleet-replay-action"
REPLAY_HEADERS = (REPLAY_OF_HEADER, REPLAY_ACTION_HEADER)


@dataclass(frozen=True)
class ReplayMark:
    """Which dead letter a message is a replayed copy of, and which operator action sent it."""

    dead_letter_id: int
    action_id: int

    def headers(self) -> dict[str, str]:
        return {REPLAY_OF_HEADER: str(self.dead_letter_id), REPLAY_ACTION_HEADER: str(self.action_id)}

    def key_material(self) -> bytes:
        """What a dead letter's archive key adds for a replayed copy."""
        return f"replay:{self.dead_letter_id}:{self.action_id}".encode()

    @classmethod
    def from_headers(cls, headers: Mapping[str, Any] | None) -> ReplayMark | None:
        """The mark in `headers`, or None when there is none or it is not two positive whole numbers."""
        if not headers:
            return None
        of, action = _positive(headers.get(REPLAY_OF_HEADER)), _positive(headers.get(REPLAY_ACTION_HEADER))
        return None if of is None or action is None else cls(of, action)


def _positive(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    return value if isinstance(value, int) and 0 < value < 2**63 else None
