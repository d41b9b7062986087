"""The relay's own counter: each circuit breaker opening and closing (deliveries by result are in metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

breaker_transitions_total = Counter(
    "flowfleet_downstream_breaker_transitions_total",
    "Circuit breaker moves per downstream system (opened, closed), made by this process.",
    ["system", "state"],
)
