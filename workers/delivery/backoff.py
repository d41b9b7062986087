"""How long a delivery waits before its next try: exponential with full jitter, capped, never below Retry-After."""

from __future__ import annotations

import random


def backoff_seconds(
    attempts: int, *, min_ms: int, max_ms: int, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """The wait after the `attempts`-th failure (1-based): between half and all of min·2^(n-1), capped."""
    ceiling: float = min(max_ms, min_ms * 2 ** min(max(attempts - 1, 0), 40)) / 1000
    wait = ceiling * (0.5 + (rng or random).random() / 2)
    return max(wait, retry_after or 0.0)
