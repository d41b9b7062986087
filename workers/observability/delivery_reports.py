"""A delivery dead letter reaches Sentry once, grouped by its failure fingerprint like every other dead letter."""

from __future__ import annotations

from typing import Any

from workers.observability.sentry import sentry_active


def report_delivery_dead_letter(row: dict[str, Any], *, dead_letter_id: int, fingerprint: str, message: str) -> None:
    """One Sentry event (a no-op without SENTRY_DSN), tagged like a message's dead letter, with no body."""
    if not sentry_active():
        return
    import sentry_sdk  # noqa: PLC0415  # imported already: sentry_active() said so

    with sentry_sdk.new_scope() as scope:
        for name in ("flow", "contract", "version", "message_id", "dedup_key", "system"):
            scope.set_tag(name, str(row.get(name, ""))[:200])
        scope.set_tag("stage", "delivery")
        scope.set_tag("fingerprint", fingerprint)
        scope.set_tag("dead_letter_id", str(dead_letter_id))
        scope.fingerprint = ["flowfleet-dead-letter", fingerprint]
        sentry_sdk.capture_message(f"delivery dead-lettered: {message}"[:2000], level="warning")
