"""Sending a repaired dead letter: one `repair` action through the replayer, with the patch and the edited body kept.

`dlq repair` and the console's "Send the repaired copy" both call it, so both record the same action.
"""

from __future__ import annotations

from typing import Any

from workers.deadletters.repair import Repaired
from workers.deadletters.replay import Replayer
from workers.deadletters.report import ReplayOptions, ReplayReport
from workers.store.archive.actions import REPAIR
from workers.store.archive.records import DeadLetterFilter


def send_repaired(
    replayer: Replayer, dead_letter_id: int, repaired: Repaired, patch: Any, *, actor: str, reason: str, wait: float
) -> ReplayReport:
    """Replay the one record as its edited copy; the action keeps the patch and the body that was sent."""
    extra = {"patch": patch, "body": repaired.body.decode("utf-8"), "dead_letter_id": dead_letter_id}
    where = DeadLetterFilter(ids=(dead_letter_id,), status=None)
    return replayer.start(where, actor=actor, reason=reason, options=ReplayOptions(wait=wait), kind=REPAIR, extra=extra)
