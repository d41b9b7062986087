"""Two adapters sharing the real Redis hold a downstream system to its rate, and to a 429's pause, together."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from handlers.errors import Throttled
from workers.delivery.http import HttpDownstream
from workers.delivery.rate_limit import RateLimits, RedisStore

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("FLOWFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_keys() -> Iterator[tuple[str, redis.Redis]]:
    """A key prefix of this test's own on the real Redis, and a client to look; the keys are deleted afterwards.

    Skips when Redis is unreachable, except under CI=true, where it fails.
    """
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required on CI (CI=true) but unreachable at {REDIS_URL}: {error}", pytrace=False)
        pytest.skip(f"Redis unavailable at {REDIS_URL}: {error}")
    prefix = f"flowfleet-it-{uuid.uuid4().hex[:10]}:"
    try:
        yield prefix, client
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


class Downstream:
    """A real HTTP system on 127.0.0.1 that logs when each request arrived, and answers from a script."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()


@pytest.fixture
def downstream() -> Iterator[tuple[str, Downstream]]:
    system = Downstream()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            with system.lock:
                system.arrivals.append(time.monotonic())
                status, headers = system.answers.pop(0) if system.answers else (200, {})
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            """Quiet: `arrivals` is the log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", system
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def process_adapter(url: str, prefix: str, per_second: int) -> HttpDownstream:
    """The ERP adapter of one worker process: its own HTTP client and its own Redis connection."""
    limits = RateLimits(RedisStore(redis.Redis.from_url(REDIS_URL, socket_timeout=2)), prefix=prefix)
    return HttpDownstream("erp", url, timeout=5, rate_limit=limits.for_system("erp", per_second))


def most_in_any_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max((sum(1 for t in ordered[i:] if t - start < 1.0) for i, start in enumerate(ordered)), default=0)


def test_two_processes_sending_twenty_requests_at_five_a_second_never_put_more_than_five_in_one_second(
    redis_keys: tuple[str, redis.Redis], downstream: tuple[str, Downstream]
) -> None:
    prefix, _client = redis_keys
    url, system = downstream
    adapters = [process_adapter(url, prefix, per_second=5) for _ in range(2)]

    def send_ten(n: int) -> None:
        for request in range(10):
            for _try in range(20):  # a held request is retried, as its message would be
                try:
                    adapters[n].post("/orders", {"n": request}, idempotency_key=f"p{n}-{request}")
                    break
                except Throttled:
                    continue

    started = time.monotonic()
    threads = [threading.Thread(target=send_ten, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    for adapter in adapters:
        adapter.close()

    assert len(system.arrivals) == 20
    assert most_in_any_second(system.arrivals) <= 5
    assert elapsed >= 3.0, f"20 requests at 5/s went out in {elapsed:.2f} s"
    assert elapsed < 10.0


def test_a_429_from_one_process_pauses_the_other_through_redis(
    redis_keys: tuple[str, redis.Redis], downstream: tuple[str, Downstream]
) -> None:
    prefix, client = redis_keys
    url, system = downstream
    system.answers.append((429, {"Retry-After": "2"}))
    first, second = (process_adapter(url, prefix, per_second=50) for _ in range(2))

    with pytest.raises(Throttled):
        first.post("/orders", {}, idempotency_key="k-1")
    with pytest.raises(Throttled) as held:
        second.post("/orders", {}, idempotency_key="k-2")
    pause_ms = client.pttl(f"{prefix}downstream:erp:paused")
    time.sleep(2.1)
    second.post("/orders", {}, idempotency_key="k-2")
    first.close()
    second.close()

    assert 1.5 < (held.value.retry_after or 0) <= 2.0
    assert 1500 < pause_ms <= 2000, "the pause is a key with an expiry in Redis"
    assert len(system.arrivals) == 2, "the held request went out only after the pause"
    assert system.arrivals[1] - system.arrivals[0] >= 2.0
