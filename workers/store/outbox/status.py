"""Where a delivery stands: the outbox's statuses, named once for the recorder, the relay and the operators."""

from __future__ import annotations

#: Recorded with its effect, waiting to be sent (or retried, or held behind its ordering key, or paused).
PENDING = "pending"
#: The downstream system confirmed it (2xx, or 409: it already had it).
DELIVERED = "delivered"
#: Replaced before it went out by a newer request that carries the latest value for the same thing.
SUPERSEDED = "superseded"
#: Refused for good, or its delivery budget spent: a dead letter of stage `delivery` in the archive.
DEAD_LETTERED = "dead_lettered"
#: An operator decided it must never be sent (`flowfleet dlq discard` of its dead letter).
DISCARDED = "discarded"

STATUSES = (PENDING, DELIVERED, SUPERSEDED, DEAD_LETTERED, DISCARDED)
#: Not confirmed by the downstream system, and not replaced: what `flowfleet reconcile` reports.
UNCONFIRMED = (PENDING, DEAD_LETTERED, DISCARDED)
