"""Fixtures for the ops tests: a clean environment, and a migrated SQLite archive holding a few dead letters."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.errors import ContractViolation
from handlers.errors import PermanentError
from workers.failures import classify
from workers.messaging.dead_letters import archive_record, dead_letter_headers, dead_letter_id
from workers.store.archive.records import archive
from workers.store.db import make_engine, migrate


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No FLOWFLEET_* or PROMETHEUS_MULTIPROC_DIR from the developer's shell; files only under tmp_path."""
    for name in list(os.environ):
        if name.startswith("FLOWFLEET_") or name in ("SENTRY_DSN", "PROMETHEUS_MULTIPROC_DIR"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def _dead_letter(flow: str, contract: str, error: Exception, order_id: str) -> tuple[bytes, dict[str, object]]:
    body = json.dumps(
        {
            "message_id": f"m-{order_id}",
            "contract": contract,
            "version": 2,
            "occurred_at": "2026-11-22T10:00:00Z",
            "producer": "storefront",
            "data": {"order_id": order_id},
        }
    ).encode()
    now_ms = int(time.time() * 1000)
    headers = dead_letter_headers(
        classify(error),
        dead_letter_id=dead_letter_id(flow, body),
        event={"contract": contract, "version": 2, "message_id": f"m-{order_id}"},
        original_headers={},
        attempts=1,
        delivery_count=0,
        first_failed_ms=now_ms,
        last_failed_ms=now_ms,
    )
    return body, headers


@pytest.fixture
def archive_url(tmp_path: Path) -> str:
    """A migrated SQLite archive with three open dead letters: orders #1 and #2, payments #42 (the runbooks' id)."""
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    engine = make_engine(url)
    migrate(engine)
    letters = [
        ("orders", "order.created", PermanentError("erp POST /orders answered 400"), "ORD-1"),
        (
            "orders",
            "order.created",
            ContractViolation("data.lines.0.quantity: must be positive", field_paths=("data.lines.0.quantity",)),
            "ORD-2",
        ),
        ("payments", "payment.captured", PermanentError("capture exceeds authorization"), "ORD-3"),
    ]
    with engine.begin() as connection:
        for index, (flow, contract, error, order_id) in enumerate(letters):
            body, headers = _dead_letter(flow, contract, error, order_id)
            record = archive_record(flow, f"{flow}.XQ", headers, body)
            archive(connection, record | {"id": 42} if index == len(letters) - 1 else record)
    engine.dispose()
    return url
