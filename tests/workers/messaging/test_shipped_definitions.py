"""The RabbitMQ definitions shipped in ops/ must be what `flowfleet topology export` produces today."""

from __future__ import annotations

import json
from pathlib import Path

from workers.fleet import topology
from workers.messaging.topology import definitions
from workers.settings import Settings

SHIPPED = Path(__file__).resolve().parents[3] / "ops" / "rabbitmq" / "definitions.json"


def test_the_shipped_rabbitmq_definitions_match_the_code() -> None:
    expected = definitions(topology(Settings()))

    assert json.loads(SHIPPED.read_text(encoding="utf-8")) == expected, (
        "ops/rabbitmq/definitions.json is stale: regenerate it with `flowfleet topology export`"
    )
