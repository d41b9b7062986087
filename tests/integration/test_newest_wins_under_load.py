"""The issue's reproduction, as an upstream team tried it: newer then older catalog events, back to back, two workers.

For each new SKU a newer `price.changed` and then an older one, and `product.updated` revision 2 and
then 1, are published at once to two workers with eight threads each. Whatever order the threads
apply them in, every SKU must end with the newer price and revision, and the channels must never be
told the older one last.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pika
import pytest

from tests.integration.conftest import Database, FakeErp, Rabbit, WorkerProcess, make_envelope
from tests.support.integration import wait_until

pytestmark = pytest.mark.integration

#: SKUs per run (the issue saw 15 of 400 prices and 6 of 400 products end older before the fix).
SKUS = int(os.environ.get("FLOWFLEET_TEST_NEWEST_WINS_SKUS", "200"))
OLDER, NEWER = datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC) + timedelta(hours=1)


def _pairs(run: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for n in range(SKUS):
        sku = f"NW-{run}-{n:04d}"
        for effective_at, amount in ((NEWER, 4250), (OLDER, 4000)):
            data = {"sku": sku, "currency": "GBP", "amount_minor": amount, "effective_at": effective_at.isoformat()}
            events.append(("price.changed", data))
        events.extend(
            ("product.updated", {"sku": sku, "revision": revision, "title": f"rev {revision}"}) for revision in (2, 1)
        )
    return events


def _publish_all(rabbit: Rabbit, events: list[tuple[str, dict[str, Any]]]) -> None:
    properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json")
    with rabbit.channel() as channel:
        channel.confirm_delivery()
        for contract, data in events:
            body = json.dumps(make_envelope(data, contract=contract, version=1)).encode("utf-8")
            channel.basic_publish("commerce.events", contract, body, properties, mandatory=True)


def test_newer_catalog_events_win_over_older_ones_published_right_after_them_to_two_busy_workers(
    worker: Callable[..., WorkerProcess], rabbit: Rabbit, database: Database, fake_erp: FakeErp
) -> None:
    for _ in range(2):
        worker(FLOWFLEET_WORKER_THREADS="8", FLOWFLEET_DATABASE_URL=database.url)
    events = _pairs(uuid.uuid4().hex[:6])
    started = time.monotonic()

    _publish_all(rabbit, events)
    wait_until(
        lambda: database.scalar("SELECT count(*) FROM processed_events WHERE flow = 'catalog'") == len(events),
        timeout=120,
        what=f"all {len(events)} catalog events to be handled",
    )
    elapsed = time.monotonic() - started

    older_prices = database.scalar("SELECT count(*) FROM prices WHERE amount_minor <> 4250")
    older_products = database.scalar("SELECT count(*) FROM products WHERE revision <> 2")
    print(
        f"\n{SKUS} SKUs, {len(events)} events, {elapsed:.1f} s, older: {older_prices} prices, {older_products} products"
    )
    assert database.scalar("SELECT count(*) FROM prices") == SKUS
    assert (older_prices, older_products) == (0, 0)
    wait_until(  # the channels hear after the commit, from the outbox's relay
        lambda: database.scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'") == 0,
        timeout=120,
        what="every delivery to the channels sent",
    )
    last_told: dict[tuple[str, str], Any] = {}
    for request in fake_erp.requests:  # in the order the channels received them
        if request.path in ("/channels/prices", "/channels/products"):
            last_told[request.path, request.body["sku"]] = request.body.get(
                "amount_minor", request.body.get("revision")
            )
    assert len(last_told) == 2 * SKUS
    assert {value for (path, _sku), value in last_told.items() if path.endswith("prices")} == {4250}
    assert {value for (path, _sku), value in last_told.items() if path.endswith("products")} == {2}
    assert database.dead_letters() == []
