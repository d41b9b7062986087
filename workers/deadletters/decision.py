"""What on-call should do with a kind of failure: retry, repair, suppress or escalate, and the command for it.

A replay only helps when what failed has changed: a downstream system that refused for good refuses
again until its team fixes it (escalate, then replay a canary first); an event whose data broke its
contract fails again byte for byte (repair it, or have the producer resend it corrected); an event too
old to apply will never apply (suppress). What waited for something that may exist now is retried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RETRY, REPAIR, SUPPRESS, ESCALATE = "retry", "repair", "suppress", "escalate"
DECISIONS = (RETRY, REPAIR, SUPPRESS, ESCALATE)
#: How a downstream system's answer reads in a final error (workers.delivery.responses).
_ANSWERED = re.compile(r"^(?P<system>[a-z]+) POST \S+ answered (?P<status>\d{3})")
#: The stage of a dead letter whose event was applied and whose request a system refused.
DELIVERY = "delivery"


@dataclass(frozen=True)
class Refusal:
    """A downstream system's answer that a failure ended with."""

    system: str
    status: int

    @property
    def permanent(self) -> bool:
        return 400 <= self.status < 500 and self.status not in (408, 409, 429)


def refusal(error_message: str | None) -> Refusal | None:
    """The downstream answer a final error reports, if it reports one (`erp POST /orders answered 400`)."""
    found = _ANSWERED.search((error_message or "").split("final error: ")[-1])
    return None if found is None else Refusal(found["system"], int(found["status"]))


@dataclass(frozen=True)
class Suggestion:
    decision: str
    why: str
    #: The next command(s), with FINGERPRINT standing for the group.
    next: str


def suggest(stage: str, error_type: str, error_message: str | None, fingerprint: str) -> Suggestion:
    """The suggested decision for a group of dead letters that share this stage, error type and sample reason."""
    group = f"--group {fingerprint}"
    answer = refusal(error_message)
    if answer is not None and answer.permanent:
        return Suggestion(
            ESCALATE,
            f"{answer.system} refused these for good ({answer.status}): a replay fails again unless {answer.system} "
            "changed",
            f"ask the {answer.system} team; once fixed: flowfleet dlq replay {group} --dry-run, then "
            f"flowfleet dlq replay {group} --canary 5 --reason '…'",
        )
    if stage in ("decode", "contract"):
        return Suggestion(
            REPAIR,
            "the producer's data breaks the contract: the same bytes fail again",
            "have the producer resend them corrected (each dead letter then closes itself as superseded), "
            "or fix one: flowfleet dlq repair ID --patch '[…]' --reason '…'",
        )
    if stage == "expired":
        return Suggestion(
            SUPPRESS,
            "too old to apply: a replay is refused by the age limit too",
            f"flowfleet dlq discard {group} --reason '…' (after telling the producer)",
        )
    if stage == DELIVERY or "retry budget exhausted" in (error_message or "") or error_type == "ParkedTooLong":
        return Suggestion(
            RETRY,
            "what it waited for (a downstream system, an earlier event) may be there now",
            f"flowfleet dlq replay {group} --dry-run, then flowfleet dlq replay {group} --reason '…'",
        )
    return Suggestion(
        ESCALATE,
        "a business rule refused it, or flowfleet failed: a replay fails again unless the cause is fixed",
        "open one (flowfleet dlq show ID) and ask the flow's owner",
    )
