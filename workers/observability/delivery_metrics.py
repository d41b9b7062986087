"""The relay's counters: deliveries by result, and each circuit breaker opening and closing."""

from __future__ import annotations

from prometheus_client import Counter

#: delivered, retried, throttled, dead_lettered, released (given back unsent), lease_lost.
DELIVERY_RESULTS = ("delivered", "retried", "throttled", "dead_lettered", "released", "lease_lost")

deliveries_total = Counter(
    "flowfleet_deliveries_total", "Outbox deliveries the relay settled, by result.", ["system", "result"]
)
breaker_transitions_total = Counter(
    "flowfleet_downstream_breaker_transitions_total",
    "Circuit breaker moves per downstream system (opened, closed), made by this process.",
    ["system", "state"],
)
