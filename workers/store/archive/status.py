"""Where a dead letter stands: the archive's record statuses, named once for the drain, replays and operators."""

from __future__ import annotations

#: Waiting for an operator: what `dlq list` shows and a replay may claim.
OPEN = "open"
#: Claimed by a replay or repair; its copy is out, or failed again into a newer record.
REPLAYED = "replayed"
#: Suppressed by an operator (`dlq discard`); kept, and restorable.
DISCARDED = "discarded"
#: A replayed copy was applied (or already had been).
RESOLVED = "resolved"

STATUSES = (OPEN, REPLAYED, DISCARDED, RESOLVED)
#: Closed for good: the only records a purge may delete.
CLOSED = (RESOLVED, DISCARDED)
