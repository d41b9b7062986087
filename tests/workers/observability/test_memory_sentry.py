"""Sentry gets one event per dead letter, tagged to match its dead-letter group, and nothing personal or secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from handlers.errors import PermanentError
from tests.support.envelopes import envelope, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import FleetRunner
from workers.delivery.fake import FakeDownstream
from workers.messaging.memory_broker import MemoryBroker
from workers.observability.sentry import init_sentry
from workers.settings import Settings

# The personal data and secrets of this test live up here, away from the frames Sentry reads source lines of.
EMAIL = "zoe.angstrom@example.com"
NAME = "Zoë Ångström"
STREET = "Hauptstraße 5"
PHONE = "+49 30 9876543"
CITY = "Köln"
POSTAL_CODE = "50667"
BROKER_PASSWORD = "s3cret-broker-pw"
ERP_PASSWORD = "s3cret-erp-pw"
ERP_URL = f"https://erp-user:{ERP_PASSWORD}@erp.example.internal"
DSN = "https://0123456789abcdef0123456789abcdef@o1.ingest.example.invalid/42"
PERSONAL = (EMAIL, NAME, STREET, PHONE, CITY, POSTAL_CODE)
SECRETS = (BROKER_PASSWORD, ERP_PASSWORD, ERP_URL, DSN)


class CapturingTransport(Transport):
    """Keeps every envelope the SDK would send."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event" and item.payload.json is not None
        ]

    def everything(self) -> str:
        """All envelopes as sent (JSON escapes non-ASCII) and as read (it does not)."""
        sent = b"".join(envelope.serialize() for envelope in self.envelopes).decode("utf-8")
        read = json.dumps(
            [item.payload.json for envelope in self.envelopes for item in envelope.items], ensure_ascii=False
        )
        return sent + "\n" + read


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The worker settings, with a password in the broker and ERP URLs and a Sentry DSN."""
    return settings.model_copy(
        update={
            "broker_url": SecretStr(f"amqp://flowfleet:{BROKER_PASSWORD}@rabbit.example.internal:5672/%2F"),
            "erp_url": ERP_URL,
            "sentry_dsn": SecretStr(DSN),
        }
    )


@pytest.fixture
def sentry_transport() -> Iterator[CapturingTransport]:
    """A transport that sends nothing; Sentry is shut down again after the test."""
    transport = CapturingTransport()
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def order_with_personal_data(order_id: str) -> dict[str, Any]:
    data = order_v2(order_id, email=EMAIL, name=NAME)
    data["ship_to"] = {
        "name": NAME,
        "line1": STREET,
        "line2": f"Hinterhaus, Tel. {PHONE}",
        "city": CITY,
        "postal_code": POSTAL_CODE,
        "country": "DE",
    }
    return data


def refuse_echoing_everything(_path: str, payload: Mapping[str, Any], _key: str, _attempt: int) -> int:
    """An ERP client that puts the whole request, and where it sent it, in its error message."""
    raise PermanentError(f"ERP at {ERP_URL} refused {dict(payload)!r} (ship to {STREET}, {CITY}; call {PHONE})")


def test_a_dead_lettered_order_reaches_sentry_tagged_and_with_no_personal_data_or_secret_anywhere(
    fleet_runner: FleetRunner,
    settings: Settings,
    faults: PortFaults,
    sentry_transport: CapturingTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # so that INFO logs (Dramatiq names the message in one) become breadcrumbs
    assert init_sentry(settings, transport=sentry_transport)
    fleet = fleet_runner()  # the broker is created after Sentry, as workers.cli.worker does it
    assert any(type(m).__name__ == "SentryMiddleware" for m in fleet.broker.middleware)
    faults.responder = refuse_echoing_everything
    body = envelope(order_with_personal_data("ORD-7001"), message_id="msg-7001")

    assert fleet.run(body) == 1

    [dead] = fleet.dead_letters()
    [event] = sentry_transport.events()
    assert event["tags"] == {
        "flow": "orders",
        "contract": "order.created",
        "version": "2",
        "message_id": "msg-7001",
        "correlation_id": json.loads(body)["correlation_id"],
        "dedup_key": "ORD-7001",
        "fingerprint": dead["fingerprint"],
        "stage": "handler",
        "dead_lettered": "yes",
    }
    assert event["fingerprint"] == ["flowfleet-dead-letter", dead["fingerprint"]]
    assert event["exception"]["values"][-1]["type"] == "PermanentError"
    assert "data" not in event["contexts"]["dramatiq"], "the message body is not attached"
    assert any(crumb.get("category", "").startswith("dramatiq") for crumb in event["breadcrumbs"]["values"])
    everything = sentry_transport.everything()
    for value in (*PERSONAL, *SECRETS, body.decode("utf-8")):
        assert value not in everything, f"{value!r} left the process"
    assert "ORD-7001" in everything, "business ids stay readable"


def test_a_retry_that_then_succeeds_sends_nothing_to_sentry(
    fleet_runner: FleetRunner, settings: Settings, faults: PortFaults, sentry_transport: CapturingTransport
) -> None:
    assert init_sentry(settings, transport=sentry_transport)
    fleet = fleet_runner()
    faults.responder = lambda _path, _payload, _key, attempt: 503 if attempt == 1 else 200

    fleet.run(envelope(order_with_personal_data("ORD-7002")))

    assert fleet.tally("retried") == 1
    assert fleet.tally("processed") == 1
    assert sentry_transport.events() == []


def test_without_a_dsn_sentry_is_not_started_and_the_broker_gets_no_sentry_middleware(
    fleet_runner: FleetRunner, database_url: str
) -> None:
    assert init_sentry(Settings(database_url=SecretStr(database_url))) is False

    fleet = fleet_runner(MemoryBroker)

    assert not sentry_sdk.get_client().is_active()
    assert not any(type(m).__name__ == "SentryMiddleware" for m in fleet.broker.middleware)


def test_a_delivery_dead_letter_reaches_sentry_once_grouped_by_its_fingerprint_without_the_request(
    fleet_runner: FleetRunner,
    settings: Settings,
    erp: FakeDownstream,
    sentry_transport: CapturingTransport,
) -> None:
    assert init_sentry(settings, transport=sentry_transport)
    fleet = fleet_runner()
    erp.responder = lambda *_: 400

    fleet.run(envelope(order_with_personal_data("ORD-7003"), message_id="msg-7003"))

    [dead] = fleet.dead_letters()
    [event] = sentry_transport.events()
    assert dead["stage"] == "delivery"
    assert event["fingerprint"] == ["flowfleet-dead-letter", dead["fingerprint"]]
    assert {k: event["tags"][k] for k in ("stage", "flow", "system", "message_id", "dedup_key")} == {
        "stage": "delivery",
        "flow": "orders",
        "system": "erp",
        "message_id": "msg-7003",
        "dedup_key": "ORD-7003",
    }
    everything = sentry_transport.everything()
    for value in (*PERSONAL, *SECRETS):
        assert value not in everything, f"{value!r} left the process"
