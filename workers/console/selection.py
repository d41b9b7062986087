"""A page's selection of dead letters from its query string (or a form's hidden fields): the `dlq` selectors.

`/records?flow=payments&stage=contract&since=2h&order_id=ORD-1` reads like `dlq list --flow payments
--stage contract --since 2h --key order_id=ORD-1`: every name that is not a selector is a business key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from workers.console.views import Refused
from workers.deadletters.selection import moment
from workers.failures import STAGES
from workers.store.archive.records import DeadLetterFilter
from workers.store.archive.status import OPEN, STATUSES

SELECTORS = ("group", "flow", "stage", "status", "contract", "version", "error_type", "message_id", "since", "until")
#: Names a form or a page uses for itself, never business keys.
OWN_FIELDS = frozenset(
    {
        *("before", "limit", "csrf_token", "reason", "canary", "canary_wait", "rate", "wait", "patch"),
        *("ids", "all", "unmask"),
    }
)
_KEY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


def selection_of(params: Mapping[str, str], *, status: str | None = OPEN) -> DeadLetterFilter:
    """The filter the parameters describe; `status=any` reads every status, none given reads `status`."""
    value = {name: params.get(name, "").strip() or None for name in SELECTORS}
    if value["stage"] is not None and value["stage"] not in STAGES:
        raise Refused(f"stage is one of {', '.join(STAGES)}")
    chosen: str | None = status
    if value["status"] is not None:
        if value["status"] not in (*STATUSES, "any"):
            raise Refused(f"status is one of {', '.join(STATUSES)} or any")
        chosen = None if value["status"] == "any" else value["status"]
    try:
        version = None if value["version"] is None else int(value["version"])
        since = None if value["since"] is None else moment(value["since"])
        until = None if value["until"] is None else moment(value["until"])
    except ValueError:
        raise Refused("version is a number; since and until are ISO dates or times, or e.g. 2h, 3d") from None
    keys = tuple(
        sorted(
            (name, text.strip())
            for name, text in params.items()
            if name not in SELECTORS and name not in OWN_FIELDS and text.strip()
        )
    )
    for name, _ in keys:
        if not _KEY_NAME.match(name):
            raise Refused(f"{name[:40]!r} is neither a selector nor a business key name")
    return DeadLetterFilter(
        flow=value["flow"],
        stage=value["stage"],
        status=chosen,
        contract=value["contract"],
        message_id=value["message_id"],
        version=version,
        error_type=value["error_type"],
        fingerprint=value["group"],
        since=since,
        until=until,
        keys=keys,
    )


def selection_params(params: Mapping[str, str]) -> dict[str, str]:
    """The parameters that make up the selection (selectors and business keys), to carry to the next page."""
    return {k: v for k, v in params.items() if k not in OWN_FIELDS and v.strip()}
