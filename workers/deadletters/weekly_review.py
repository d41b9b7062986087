"""The weekly operational review as markdown and as JSON: the figures of workers.store.archive.review, in words.

Not the replay report (workers.deadletters.report): this is the week as the owners review it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from workers.observability.masking import mask, mask_text
from workers.ownership import Owner
from workers.store.archive.review import Review
from workers.store.outbox.controls import aware

#: Stale events (older than what was applied) are counted only by this metric, never stored.
STALE_METRIC = "flowfleet_stale_events_total"


def stale_query(review: Review) -> str:
    """The PromQL that counts the window's stale events per flow."""
    hours = max(1, round((review.until - review.since).total_seconds() / 3600))
    return f"sum by (flow) (increase({STALE_METRIC}[{hours}h]))"


def duration(seconds: float) -> str:
    """12 s, 4 min, 3.5 h, 2.0 d."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _moment(value: datetime | None) -> str:
    found = aware(value)
    return "-" if found is None else f"{found:%Y-%m-%d %H:%M} UTC"


def _cell(value: Any, *, masked: bool = True) -> str:
    """A table cell: one line, no pipe to break the table, masked unless it is our own configuration."""
    text = str(value if value not in (None, "") else "-")
    return (mask_text(text) if masked else text).replace("|", "/").replace("\n", " ")[:120]


def as_json(review: Review, owners: Mapping[str, Owner], system_owners: Mapping[str, Owner]) -> dict[str, Any]:
    """The review as JSON: `owners` by failure group, `system_owners` by downstream system."""
    return {
        "since": review.since,
        "until": review.until,
        "failures": [asdict(item) for item in review.failures],
        "recoveries": [asdict(item) for item in review.recoveries],
        "stale_events": {"stored": False, "metric": STALE_METRIC, "query": stale_query(review)},
        "interventions": [mask(row) for row in review.interventions],
        "interventions_by_actor": {
            actor: dict(kinds) for actor, kinds in sorted(_by_actor(review.interventions).items())
        },
        "systems": {
            system: {
                "pending": state.pending,
                "overdue": state.overdue,
                "dead_lettered": state.dead_lettered,
                "oldest_pending_at": state.oldest_pending_at,
                "mismatches": dict(review.mismatches.get(system, Counter())),
                "owner": owner.to_json() if (owner := system_owners.get(system)) else None,
            }
            for system, state in review.backlog.items()
        },
        "undecided_groups": [
            {
                "fingerprint": group["fingerprint"],
                "flows": group["flows"],
                "stage": group["stage"],
                "error_type": group["error_type"],
                "open": int(group["count"]),
                "first_seen": aware(group["first_seen"]),
                "owner": owners[group["fingerprint"]].to_json(),
            }
            for group in review.undecided
        ],
    }


def _by_actor(rows: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = {}
    for row in rows:
        found.setdefault(str(row["actor"]), Counter())[str(row["kind"])] += 1
    return found


def as_markdown(review: Review, owners: Mapping[str, Owner], system_owners: Mapping[str, Owner]) -> str:
    lines = [
        f"# Weekly operational review, {_moment(review.since)} to {_moment(review.until)}",
        "",
        *_failures(review),
        *_recoveries(review),
        "## Stale events",
        "",
        f"Not stored in the archive: the workers count them only in the metric `{STALE_METRIC}`. "
        f"In Prometheus: `{stale_query(review)}`.",
        "",
        *_interventions(review),
        *_systems(review, system_owners),
        *_undecided(review, owners),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _failures(review: Review) -> list[str]:
    lines = ["## Failures by flow, stage and group", ""]
    if not review.failures:
        return [*lines, "No dead letters in the window.", ""]
    by_flow: Counter[str] = Counter()
    by_stage: Counter[tuple[str, str]] = Counter()
    for item in review.failures:
        by_flow[item.flow] += item.count
        by_stage[(item.flow, item.stage)] += item.count
    for flow, total in sorted(by_flow.items()):
        stages = ", ".join(f"{stage} {count}" for (f, stage), count in sorted(by_stage.items()) if f == flow)
        lines.append(f"- **{flow}**: {total} dead letter(s) ({stages})")
    lines += [
        "",
        "| flow | stage | group | error | dead letters | of them replays failing again |",
        "|---|---|---|---|---|---|",
    ]
    for item in review.failures:
        cells = (item.flow, item.stage, item.fingerprint, item.error_type, item.count, item.refailed)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return [*lines, ""]


def _recoveries(review: Review) -> list[str]:
    lines = ["## Time to recovery (dead-lettered to resolved)", ""]
    if not review.recoveries:
        return [*lines, "Nothing was resolved in the window.", ""]
    lines += ["| flow | resolved | median | worst |", "|---|---|---|---|"]
    for item in review.recoveries:
        worst = f"{duration(item.worst_seconds)} (#{item.worst_id})"
        lines.append(f"| {item.flow} | {item.resolved} | {duration(item.median_seconds)} | {worst} |")
    return [*lines, ""]


def _interventions(review: Review) -> list[str]:
    lines = ["## Manual interventions", ""]
    if not review.interventions:
        return [*lines, "No operator action in the window.", ""]
    for actor, kinds in sorted(_by_actor(review.interventions).items()):
        lines.append(f"- **{_cell(actor)}**: " + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())))
    lines += ["", "| # | started | by | kind | status | reason |", "|---|---|---|---|---|---|"]
    for row in review.interventions:
        cells = (row["id"], _moment(row["started_at"]), row["actor"], row["kind"], row["status"], row["reason"])
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return [*lines, ""]


def _systems(review: Review, system_owners: Mapping[str, Owner]) -> list[str]:
    lines = [
        "## Delivery backlog (now) and reconciliation mismatches (window) per system",
        "",
        "| system | pending | overdue | dead-lettered | oldest pending | mismatches | owner |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, state in review.backlog.items():
        found = review.mismatches.get(system, Counter())
        mismatches = ", ".join(f"{why} {n}" for why, n in sorted(found.items())) or "0"
        owner = system_owners.get(system)
        cells = (
            system,
            state.pending,
            state.overdue,
            state.dead_lettered,
            _moment(state.oldest_pending_at),
            mismatches,
            owner.name if owner else "-",
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return [*lines, ""]


def _undecided(review: Review, owners: Mapping[str, Owner]) -> list[str]:
    lines = ["## Open groups without an owner's decision (never replayed, repaired or discarded)", ""]
    if not review.undecided:
        return [*lines, "Every open group has had a decision.", ""]
    lines += ["| group | flows | stage | error | open | since | owner |", "|---|---|---|---|---|---|---|"]
    for group in review.undecided:
        owner = owners[group["fingerprint"]]
        cells = (
            group["fingerprint"],
            ", ".join(group["flows"]),
            group["stage"],
            group["error_type"],
            group["count"],
            _moment(group["first_seen"]),
        )
        owned = _cell(f"{owner.name} ({owner.contact})", masked=False)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + f" | {owned} |")
    return [*lines, ""]
