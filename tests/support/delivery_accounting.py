"""The soak's delivery accounting in pieces: order per ordering key, refusals accounted, a pause honoured."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def out_of_order(deliveries: Iterable[Mapping[str, Any]], applied_in_order: Sequence[str]) -> list[str]:
    """Ordering keys whose deliveries a system applied in another order than they were recorded (by id).

    `applied_in_order` is the Idempotency-Keys in the order the system first applied them; deliveries that
    never reached it (superseded, dead-lettered) are left out, as they have no place in that order.
    """
    position = {key: n for n, key in reversed(list(enumerate(applied_in_order)))}
    by_ordering_key: dict[str, list[tuple[int, str]]] = {}
    for row in deliveries:
        key = str(row["idempotency_key"])
        if key in position:
            by_ordering_key.setdefault(str(row["ordering_key"]), []).append((int(row["id"]), key))
    wrong = []
    for ordering_key, rows in sorted(by_ordering_key.items()):
        applied = [position[key] for _id, key in sorted(rows)]
        if applied != sorted(applied):
            wrong.append(ordering_key)
    return wrong


def refusals_without_a_dead_letter(refused_keys: Iterable[str], dead_letters: Iterable[Mapping[str, Any]]) -> list[str]:
    """Idempotency-Keys of dead-lettered deliveries that no dead letter of stage `delivery` accounts for."""
    archived = set()
    for row in dead_letters:
        headers = row["headers"]
        if isinstance(headers, str):
            headers = json.loads(headers)
        if row["stage"] == "delivery" and isinstance(headers, Mapping):
            archived.add(str(headers.get("idempotency_key")))
    return sorted(set(refused_keys) - archived)


def sent_while_paused(arrivals: Iterable[float], windows: Iterable[tuple[float, float]], grace: float) -> list[float]:
    """Request arrival times inside a pause window, after `grace` seconds for the relays to see the pause."""
    spans = list(windows)
    return sorted(at for at in arrivals if any(start + grace <= at < end for start, end in spans))
