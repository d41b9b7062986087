"""One request for one claimed delivery, made with no database connection in hand, and what its answer means."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from handlers.downstream import Downstream
from handlers.errors import PermanentError, Throttled, TransientError

logger = logging.getLogger("flowfleet.delivery")

DELIVERED, TRANSIENT, THROTTLED, PERMANENT = "delivered", "transient", "throttled", "permanent"


@dataclass(frozen=True)
class Sent:
    """What the system answered: delivered, transient (retry), throttled (slow down) or permanent (refused)."""

    result: str
    error_type: str = ""
    message: str = ""
    retry_after: float | None = None


def send(target: Downstream, row: dict[str, Any]) -> Sent:
    """POST the delivery's body with its Idempotency-Key; any unforeseen error counts as transient."""
    try:
        target.post(str(row["path"]), row["body"], idempotency_key=str(row["idempotency_key"]))
    except Throttled as error:
        return Sent(THROTTLED, type(error).__name__, str(error), error.retry_after)
    except TransientError as error:
        return Sent(TRANSIENT, type(error).__name__, str(error), error.retry_after)
    except PermanentError as error:
        return Sent(PERMANENT, type(error).__name__, str(error))
    except Exception as error:  # a bug or an unforeseen failure: retried within the budget, never lost
        logger.exception("delivery %s to %s failed unexpectedly", row["id"], row["system"])
        return Sent(TRANSIENT, type(error).__name__, str(error) or type(error).__name__)
    return Sent(DELIVERED)
