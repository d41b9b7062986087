"""Runs a dead letter's body through today's decoding, contracts, upcasters, age limit and dedup table, sending nothing.

This is what `dlq replay --dry-run` and `dlq repair --dry-run` report per record: it would pass, it
was already applied (a replay would be a duplicate; also a broken body whose corrected resend was applied:
superseded), or it still fails and why. The checks are the
pipeline's own, in its order, with the code deployed now, so a fix that shipped (a new contract
version, a relaxed validator) shows up as "would pass". The handler is not run: it has effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from contracts.envelope import decode_envelope
from contracts.errors import RejectedMessage
from contracts.registry import ContractRegistry
from workers.messaging.event_identity import lenient_dedup_key
from workers.store.dedup import was_applied

WOULD_PASS, ALREADY_APPLIED, STILL_FAILING = "would_pass", "already_applied", "still_failing"


@dataclass(frozen=True)
class Verdict:
    """What replaying one body would do today, before its handler runs."""

    verdict: str
    stage: str | None = None
    reason: str | None = None
    field_paths: tuple[str, ...] = field(default=())
    contract: str | None = None
    version: int | None = None
    dedup_key: str | None = None


def _superseding_key(body: bytes, flow: str, registry: ContractRegistry) -> tuple[str, str] | None:
    """The contract and dedup key of a body that fails today but names its key (a corrected resend has it)."""
    try:
        envelope = decode_envelope(body)
        contract = registry.get(envelope.contract)
    except RejectedMessage:
        return None
    if contract.flow != flow:
        return None
    key = lenient_dedup_key(contract.dedup_key, envelope.data)
    return None if key is None else (envelope.contract, key)


def check(
    connection: Connection,
    body: bytes,
    *,
    flow: str,
    registry: ContractRegistry,
    max_event_age: timedelta,
    now: datetime | None = None,
) -> Verdict:
    """Decode, validate and upcast `body` as `flow`'s actor would, then look at its age and the dedup table."""
    try:
        envelope = decode_envelope(body)
        parsed = registry.parse(envelope, flow=flow)
    except RejectedMessage as error:
        superseded = _superseding_key(body, flow, registry)
        if superseded is not None and was_applied(connection, contract=superseded[0], dedup_key=superseded[1]):
            return Verdict(ALREADY_APPLIED, contract=superseded[0], dedup_key=superseded[1])
        return Verdict(STILL_FAILING, error.stage, error.reason, tuple(error.field_paths))
    contract, version, key = envelope.contract, envelope.version, parsed.dedup_key
    if was_applied(connection, contract=contract, dedup_key=key):
        return Verdict(ALREADY_APPLIED, contract=contract, version=version, dedup_key=key)
    age = (now or datetime.now(UTC)) - envelope.occurred_at
    if age > max_event_age:
        reason = (
            f"event occurred {age.total_seconds() / 3600:.1f} h ago; the {flow} flow applies events up to "
            f"{max_event_age.total_seconds() / 3600:.1f} h old"
        )
        return Verdict(STILL_FAILING, "expired", reason, contract=contract, version=version, dedup_key=key)
    return Verdict(WOULD_PASS, contract=contract, version=version, dedup_key=key)
