"""The PostgreSQL engine pings no connection at checkout, and a dropped connection's error is retried."""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import OperationalError

from workers.failures import classify
from workers.store.db import make_engine


def test_a_postgresql_engine_sends_no_ping_before_each_checkout_and_keeps_the_pool_it_was_asked_for() -> None:
    engine = make_engine("postgresql://flowfleet@db.invalid/flowfleet", pool_size=23)

    assert engine.dialect.driver == "psycopg"
    assert engine.pool._pre_ping is False  # no public accessor
    assert engine.pool.size() == 23  # type: ignore[attr-defined]  # QueuePool's, not on the base Pool


def test_the_error_of_a_connection_the_server_dropped_is_transient_so_its_message_is_retried() -> None:
    dropped = psycopg.OperationalError("terminating connection due to administrator command")
    error = OperationalError("SELECT 1", {}, dropped, connection_invalidated=True)

    failure = classify(error)

    assert failure.transient
    assert failure.stage == "handler"
