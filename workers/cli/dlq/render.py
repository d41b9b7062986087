"""How the `dlq` write commands report in text: a replay's outcome, a status change, the progress bar."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workers.cli.dlq.archive import shown
from workers.cli.output import print_json
from workers.deadletters.report import Progress, ReplayReport
from workers.store.archive.outcomes import APPLIED, DUPLICATE, FAILED_AGAIN, PENDING

#: Records listed in a text report; --json has them all.
MAX_LISTED = 20


def progress_bar(progress: Progress) -> None:
    width = 30
    done = min(progress.sent + progress.taken, progress.total)
    filled = width * done // max(progress.total, 1)
    sys.stderr.write(
        f"\rreplay #{progress.action_id} [{'#' * filled}{'.' * (width - filled)}] "
        f"{progress.sent}/{progress.total} sent" + (f", {progress.taken} taken by others" if progress.taken else "")
    )
    sys.stderr.flush()


def print_report(args: argparse.Namespace, report: ReplayReport) -> None:
    data = report.to_json()
    for refailure in data["failed_again"]:
        refailure["error_message"] = shown(refailure["error_message"])
    data["not_published"] = [item | {"reason": shown(item["reason"])} for item in data["not_published"]]
    if args.json:
        print_json(data)
        return
    outcomes = report.outcomes
    rate = f" at {report.achieved_rate:.1f}/s" if report.achieved_rate else ""
    print(
        f"{report.kind} #{report.action_id} {report.status}: {report.selected} selected, {report.sent} sent{rate}"
        + (f", {report.resent} in-doubt sent again" if report.resent else "")
        + f" ({report.seconds:.1f} s)"
    )
    if report.note:
        print(f"  {report.note}")
    print(
        f"  outcomes: {outcomes.get(APPLIED, 0)} applied, {outcomes.get(DUPLICATE, 0)} duplicate "
        f"(already applied), {outcomes.get(FAILED_AGAIN, 0)} failed again, {outcomes.get(PENDING, 0)} pending"
    )
    if outcomes.get(PENDING):
        print(
            "  pending outcomes are recorded when a worker handles them: see `flowfleet dlq actions "
            f"{report.action_id}`"
        )
    for refailure in data["failed_again"][:MAX_LISTED]:
        same = "same fingerprint" if refailure["same_fingerprint"] else "NEW fingerprint"
        print(
            f"  failed again: #{refailure['dead_letter_id']} -> #{refailure['new_dead_letter_id']} ({same}): "
            f"{refailure['error_type']}: {refailure['error_message'][:150]}"
        )
    for item in data["not_published"][:MAX_LISTED]:
        print(f"  NOT published: #{item['dead_letter_id']}: {item['reason']}")
    if report.taken:
        print(f"  taken by another action or no longer open: {len(report.taken)} (not sent by this one)")
    print(f"  arrived since the replay started, matching its selection (not replayed): {report.arrived_since}")


def report_change(
    args: argparse.Namespace,
    verb: str,
    ids: list[int],
    *,
    action_id: int | None = None,
    dry_run: bool = False,
    skipped: list[int] | None = None,
) -> int:
    skipped = skipped or []
    if args.json:
        print_json({"dry_run": dry_run, "action_id": action_id, "count": len(ids), "ids": ids, "skipped": skipped})
        return 0
    shown = ", ".join(f"#{i}" for i in ids[:MAX_LISTED]) + (" …" if len(ids) > MAX_LISTED else "")
    audit = f" (action #{action_id})" if action_id is not None else " (dry run: nothing changed)" if dry_run else ""
    print(f"{verb} {len(ids)} dead letter(s){audit}" + (f": {shown}" if ids else ""))
    if skipped:
        print(f"  left alone (not in the status this needs): {', '.join(f'#{i}' for i in skipped[:MAX_LISTED])}")
    return 0


def counts_text(counts: dict[str, Any] | None) -> str:
    return " ".join(f"{k}={v}" for k, v in (counts or {}).items() if v not in (0, None, False))
