"""Worker logs are JSON lines naming the message being handled (id, correlation id, flow), never printing its body."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.envelopes import envelope, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import FleetRunner
from workers.observability.logs import QUIET_LOGGERS, configure_logging

EMAIL = "ada.lovelace@example.com"
NAME = "Ada Lovelace"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged at INFO and above, formatted as `flowfleet worker` does; logging restored afterwards."""
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *QUIET_LOGGERS)}
    stream = io.StringIO()
    handler = configure_logging(json=True, level="INFO", stream=stream)
    yield stream
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    """Each line parsed as JSON: the test fails on the first line that is not one object."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_processed_and_a_dead_lettered_message_log_json_lines_with_their_ids_and_no_body(
    fleet_runner: FleetRunner, faults: PortFaults, log_lines: io.StringIO
) -> None:
    fleet = fleet_runner()
    faults.responder = lambda _path, _payload, key, _attempt: 400 if "ORD-8002" in key else 200
    processed = envelope(order_v2("ORD-8001", email=EMAIL, name=NAME), message_id="msg-8001")
    refused = envelope(order_v2("ORD-8002", email=EMAIL, name=NAME), message_id="msg-8002")

    fleet.run(processed, refused)

    logged = entries(log_lines)
    assert logged, "handling two messages logs something at INFO"
    for entry in logged:
        assert {"timestamp", "level", "logger", "message"} <= entry.keys()
        assert {"message_id", "correlation_id", "flow"} <= entry.keys(), entry
        assert entry["flow"] == "orders"
    by_id = {key: [e for e in logged if e["message_id"] == key] for key in ("msg-8001", "msg-8002")}
    assert [(e["level"], e["message"][:7]) for e in by_id["msg-8001"]] == [("INFO", "handled")]
    assert ("WARNING", "dead-lettered at stage handler: PermanentError") in [
        (e["level"], e["message"]) for e in by_id["msg-8002"]
    ]
    for message_id, body in (("msg-8001", processed), ("msg-8002", refused)):
        assert {e["correlation_id"] for e in by_id[message_id]} == {json.loads(body)["correlation_id"]}
    text = log_lines.getvalue()
    for secret in (EMAIL, NAME, processed.decode("utf-8"), refused.decode("utf-8"), '"lines"'):
        assert secret not in text


def test_the_text_format_names_the_message_too(
    fleet_runner: FleetRunner, faults: PortFaults, log_lines: io.StringIO
) -> None:
    configure_logging(json=False, level="INFO", stream=log_lines)
    fleet = fleet_runner()
    faults.responder = lambda *_: 400

    fleet.run(envelope(order_v2("ORD-8003", email=EMAIL, name=NAME), message_id="msg-8003"))

    [line] = [line for line in log_lines.getvalue().splitlines() if "dead-lettered" in line]
    assert " WARNING flowfleet.failures dead-lettered at stage handler: PermanentError [flow=orders " in line
    assert "message_id=msg-8003" in line
    assert EMAIL not in log_lines.getvalue()


def test_the_handled_line_carries_every_context_field_and_its_duration(
    fleet_runner: FleetRunner, log_lines: io.StringIO
) -> None:
    fleet_runner().run(envelope(order_v2("ORD-8004", email=EMAIL, name=NAME), message_id="msg-8004"))

    [handled] = [e for e in entries(log_lines) if e["message"].startswith("handled in ")]
    assert set(handled) == {
        *("timestamp", "level", "logger", "message", "duration_ms"),
        *("flow", "contract", "version", "message_id", "correlation_id", "dedup_key"),
    }
    assert (handled["message_id"], handled["dedup_key"], handled["logger"]) == (
        "msg-8004",
        "ORD-8004",
        "flowfleet.messages",
    )
    assert handled["message"] == f"handled in {handled['duration_ms']:.1f} ms"
