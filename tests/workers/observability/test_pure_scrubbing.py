"""What leaves the process in logs and Sentry: no personal data, no secret, yet the ids on-call needs stay readable."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq import Message
from pydantic import SecretStr

from workers.observability import logs
from workers.observability.logs import QUIET_LOGGERS, configure_logging
from workers.observability.masking import MASK
from workers.observability.scrubbing import personal_values, render_log_message, scrub, scrub_text, secret_values
from workers.settings import Settings


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("broker=amqp://guest:guest@rabbit.internal:5672/%2F", "broker=amqp://***@rabbit.internal:5672/%2F"),
        ("dsn https://0123abcd@o1.ingest.sentry.io/42", "dsn https://***@o1.ingest.sentry.io/42"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: Bearer ***"),
        ('{"password": "hunter2", "token": "t0k3n"} api_key=abc123', '{"password": "***", "token": "***"} api_key=***'),
        ('refused {"email": "ana@example.com", "name": "Ana Müller"}', 'refused {"email": "***", "name": "***"}'),
        ("Customer(email='bo@example.com', name='Bo Li')", "Customer(email='***', name='***')"),
        ("mail ana@example.com or call +49 30 1234567", "mail *** or call ***"),
        ("ORD-1001 TEE-RED-M at 2026-11-22T10:00:00Z", "ORD-1001 TEE-RED-M at 2026-11-22T10:00:00Z"),
    ],
)
def test_text_is_scrubbed_of_credentials_tokens_and_personal_data_but_keeps_ids(text: str, scrubbed: str) -> None:
    assert scrub_text(text) == scrubbed


def test_known_values_are_replaced_wherever_they_appear() -> None:
    assert scrub_text("ERP refused the order of Zoë Ångström, Hauptstraße 5", {"Zoë Ångström", "Hauptstraße 5"}) == (
        f"ERP refused the order of {MASK}, {MASK}"
    )


def test_nested_values_lose_personal_and_secret_keys_and_address_subtrees() -> None:
    event = {
        "customer": {"customer_id": "C-1", "email": "a@example.com", "name": "Ana"},
        "ship_to": {"line1": "Hauptstraße 5", "country": "DE"},
        "kwargs": {"body": "{...}"},
        "headers": {"Authorization": "Basic Zm9vOmJhcg=="},
        "note": "call +49 30 1234567",
        "raw": b"\x00\x01",
    }

    assert scrub(event) == {
        "customer": {"customer_id": "C-1", "email": MASK, "name": MASK},
        "ship_to": {"line1": MASK, "country": MASK},
        "kwargs": MASK,
        "headers": {"Authorization": MASK},
        "note": f"call {MASK}",
        "raw": "<2 bytes>",
    }


def test_a_bodys_personal_values_are_found_also_as_json_escapes() -> None:
    body = '{"data": {"customer": {"customer_id": "C-1", "email": "z@example.com", "name": "Zoë"}}}'.encode()

    assert personal_values(body) == {"z@example.com", "Zoë", "Zo\\u00eb"}
    assert personal_values(b"not json") == frozenset()


def test_settings_secrets_are_url_passwords_and_the_dsn() -> None:
    settings = Settings(
        broker_url=SecretStr("amqp://flow:broker-pw@rabbit:5672/%2F"),
        erp_url="https://erp:erp-pw@erp.internal",
        SENTRY_DSN="https://public@o1.ingest.sentry.io/1",
    )

    assert secret_values(settings) == {"broker-pw", "erp-pw", "https://public@o1.ingest.sentry.io/1"}


def test_a_log_record_names_a_dramatiq_message_instead_of_printing_its_body() -> None:
    body = '{"email": "a@b.de"}'
    message: Message[Any] = Message(
        queue_name="orders", actor_name="orders", args=(), kwargs={"body": body}, options={}
    )
    record = logging.LogRecord("dramatiq", logging.INFO, "", 0, "Failed to process message %s.", (message,), None)

    assert render_log_message(record) == f"Failed to process message orders/{message.message_id}."


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    levels = {name: logging.getLogger(name).level for name in ("", *QUIET_LOGGERS)}
    stream = io.StringIO()
    handler = configure_logging(json=True, stream=stream, secrets=frozenset({"hunter2"}))
    yield stream
    logging.getLogger().removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_a_logged_exception_is_scrubbed_too(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("cannot log in as hunter2 at postgresql://app:pw@db.internal/x for ana@example.com")
    except RuntimeError:
        logging.getLogger("flowfleet.test").exception("archive unavailable", extra={"queue": "orders.XQ"})

    line = stream.getvalue()
    assert '"queue": "orders.XQ"' in line
    assert "RuntimeError: cannot log in as *** at postgresql://***@db.internal/x for ***" in line
    assert "hunter2" not in line
    assert "ana@example.com" not in line


def test_the_per_message_info_line_does_not_parse_the_body_but_warnings_and_text_arguments_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[int] = []

    def parsing_the_body() -> frozenset[str]:
        parsed.append(1)
        return frozenset({"Zoë"})

    monkeypatch.setattr(logs, "current_message_values", parsing_the_body)
    formatter = logs.JsonFormatter(frozenset())

    def line(level: int, msg: str, *args: object) -> str:
        return formatter.format(logging.LogRecord("flowfleet.messages", level, __file__, 1, msg, args, None))

    line(logging.INFO, "handled in %.1f ms", 3.1)
    assert parsed == []
    assert "Zoë" not in line(logging.INFO, "customer %s", "Zoë")
    assert "Zoë" not in line(logging.WARNING, "dead-lettered: Zoë")
    assert parsed == [1, 1]


def test_a_business_keys_label_stays_readable_in_a_scrubbed_event() -> None:
    assert scrub({"keys": [{"name": "payment_id", "value": "PAY-1"}, {"name": "Zoë", "value": "x"}]}) == {
        "keys": [{"name": "payment_id", "value": "PAY-1"}, {"name": MASK, "value": "x"}]
    }
