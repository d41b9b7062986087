"""A replay's dry run over a selection: each record's verdict and the tally by verdict and reason, sending nothing.

`dlq replay --dry-run` prints it and the console shows it before an operator may start the replay.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from contracts.registry import ContractRegistry
from workers.deadletters.decision import refusal
from workers.deadletters.preflight import ALREADY_APPLIED, STILL_FAILING, WOULD_PASS, check
from workers.store.archive.records import DeadLetterFilter, iter_dead_letters


def dry_run(
    connection: Connection,
    where: DeadLetterFilter,
    *,
    registry: ContractRegistry,
    max_event_age: timedelta,
    shown: Callable[[str], str],
) -> dict[str, Any]:
    """The report `--dry-run` prints as JSON: counts per verdict, the failing reasons (most common first), items."""
    items: list[dict[str, Any]] = []
    for record in iter_dead_letters(connection, where):
        verdict = check(
            connection, bytes(record["body"]), flow=record["flow"], registry=registry, max_event_age=max_event_age
        )
        items.append(
            {
                "id": record["id"],
                "flow": record["flow"],
                "verdict": verdict.verdict,
                "stage": verdict.stage,
                "reason": None if verdict.reason is None else shown(verdict.reason),
                "field_paths": list(verdict.field_paths),
                "dedup_key": verdict.dedup_key,
                "refused_by": _refused_by(record) if verdict.verdict == WOULD_PASS else None,
            }
        )
    tally = Counter(item["verdict"] for item in items)
    reasons = Counter((item["stage"], item["reason"]) for item in items if item["verdict"] == STILL_FAILING)
    return {
        "dry_run": True,
        "selected": len(items),
        WOULD_PASS: tally[WOULD_PASS],
        ALREADY_APPLIED: tally[ALREADY_APPLIED],
        STILL_FAILING: tally[STILL_FAILING],
        "reasons": [{"stage": s, "reason": r, "count": n} for (s, r), n in reasons.most_common()],
        #: Of those that would pass, how many a downstream system refused for good, per system: they fail
        #: again unless that system changed.
        "refused_downstream": dict(Counter(item["refused_by"] for item in items if item["refused_by"])),
        "items": items,
    }


def _refused_by(record: dict[str, Any]) -> str | None:
    answer = refusal(record.get("error_message"))
    return answer.system if answer is not None and answer.permanent else None
