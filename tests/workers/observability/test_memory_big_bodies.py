"""A multi-megabyte body goes through every path that masks or scrubs (CLI, logs, Sentry) in bounded time."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.envelopes import envelope, order_v2
from tests.support.fleet_run import Cli, FleetRun
from workers.observability.logs import QUIET_LOGGERS, configure_logging
from workers.observability.scrubbing import MAX_SCRUBBED_CHARS
from workers.observability.sentry import scrub_breadcrumb, scrub_event

#: Generous: each path takes well under a second now; with the quadratic e-mail pattern `dlq show` took
#: minutes on such a body.
BOUND_SECONDS = 5.0
#: Two million characters without an `@`: the text that made the old e-mail pattern spin.
RUN = "a" * 2_000_000
EMAIL = "ana.big@example.com"


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


@pytest.fixture
def archived(fleet: FleetRun) -> int:
    """A 2 MB order (above the 1 MiB limit: dead-lettered at `decode`) archived with its body; its id."""
    data = order_v2("ORD-BIG-1", email=EMAIL)
    data["lines"][0]["title"] = f"{RUN} {EMAIL}"  # found only by the pattern, after the long run
    assert fleet.run(envelope(data, message_id="msg-big")) == 1
    [record] = fleet.dead_letters()
    assert len(record["body"]) > 2_000_000
    return int(record["id"])


@pytest.mark.parametrize(
    "argv",
    [
        ("dlq", "show", "{id}", "--json"),
        ("dlq", "show", "{id}"),
        ("dlq", "list", "--json"),
        ("dlq", "groups", "--json"),
        ("dlq", "export", "--flow", "orders"),
    ],
    ids=["show-json", "show", "list", "groups", "export"],
)
def test_every_cli_read_of_a_huge_dead_letter_is_masked_in_bounded_time(
    cli: Cli, archived: int, argv: tuple[str, ...]
) -> None:
    ran, seconds = timed(lambda: cli(*(part.format(id=archived) for part in argv)))

    assert ran.code == 0, ran.err
    assert seconds < BOUND_SECONDS
    assert EMAIL not in ran.out


def test_an_export_to_a_file_of_a_huge_dead_letter_is_masked_in_bounded_time(
    cli: Cli, archived: int, tmp_path: Path
) -> None:
    target = tmp_path / "evidence.jsonl"

    ran, seconds = timed(lambda: cli("dlq", "export", "--flow", "orders", "--output", str(target)))

    assert ran.code == 0, ran.err
    assert seconds < BOUND_SECONDS
    [line] = target.read_text(encoding="utf-8").splitlines()
    assert EMAIL not in line and json.loads(line)["message_id"] == "msg-big"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *QUIET_LOGGERS)}
    stream = io.StringIO()
    handler = configure_logging(json=True, level="INFO", stream=stream)
    yield stream
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_a_log_line_carrying_a_huge_text_is_scrubbed_and_cut_in_bounded_time(json_log: io.StringIO) -> None:
    body = f"{RUN} {EMAIL}"

    _, seconds = timed(lambda: logging.getLogger("flowfleet.test").warning("refused %s", body))

    assert seconds < BOUND_SECONDS
    [entry] = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert EMAIL not in json.dumps(entry)
    assert len(entry["message"]) < MAX_SCRUBBED_CHARS + 100


def test_a_sentry_event_and_breadcrumb_carrying_a_huge_text_are_scrubbed_in_bounded_time() -> None:
    body = f"{RUN} {EMAIL}"
    event = {
        "message": body,
        "exception": {"values": [{"type": "PermanentError", "value": body}]},
        "extra": {"note": body},
    }

    scrubbed, seconds = timed(lambda: scrub_event(event, {}, frozenset()))
    crumb, crumb_seconds = timed(lambda: scrub_breadcrumb({"message": body, "category": "x"}, {}, frozenset()))

    assert seconds < BOUND_SECONDS and crumb_seconds < BOUND_SECONDS
    assert EMAIL not in json.dumps(scrubbed) + json.dumps(crumb)
