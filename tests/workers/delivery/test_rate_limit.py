"""The fleet shares each downstream system's request rate, and a throttled message waits without spending its budget."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import httpx
import pytest
import redis
from prometheus_client import REGISTRY
from pydantic import SecretStr

from handlers.errors import Throttled, TransientError
from tests.support.envelopes import envelope, order_v2
from tests.support.faults import PortFaults
from tests.support.fleet_run import FleetRunner
from workers.delivery import rate_limit
from workers.delivery.http import HttpDownstream
from workers.delivery.rate_limit import SLOT_MS, SLOTS, LocalStore, RateLimit, RateLimits, RedisStore
from workers.delivery.responses import raise_for_status
from workers.fleet import http_downstream
from workers.flows.flow import Flow
from workers.settings import Settings

#: The throttle cap in this module's fleets: small, so a message that is always throttled dead-letters fast.
MAX_THROTTLED = 4


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The shared fleet settings (3 attempts, 10-50 ms backoff), with a throttle cap of MAX_THROTTLED."""
    return Settings(
        database_url=SecretStr(database_url),
        max_attempts=3,
        retry_min_backoff_ms=10,
        retry_max_backoff_ms=50,
        retry_window_seconds=60,
        max_event_age_seconds=3600,
        max_throttled_retries=MAX_THROTTLED,
    )


@pytest.fixture
def redis_server() -> fakeredis.FakeServer:
    """One Redis that every 'process' in a test talks to."""
    return fakeredis.FakeServer()


def on_redis(server: fakeredis.FakeServer) -> RedisStore:
    """A process's own connection to the shared Redis."""
    return RedisStore(fakeredis.FakeRedis(server=server))


class FakeClock:
    """Wall-clock time that moves only when a test (or a limiter's sleep) moves it."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def most_in_any_second(times: list[float]) -> int:
    """The largest number of `times` inside any one-second window, wherever it starts."""
    ordered = sorted(times)
    return max((sum(1 for t in ordered[i:] if t - start < 1.0) for i, start in enumerate(ordered)), default=0)


def requests_counted(system: str, result: str) -> float:
    return REGISTRY.get_sample_value("flowfleet_downstream_requests_total", {"system": system, "result": result}) or 0.0


def answering(status: int, headers: dict[str, str] | None = None) -> tuple[httpx.Client, list[httpx.Request]]:
    """An httpx client whose every request gets `status`; the list records what was actually sent."""
    sent: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, headers=headers or {})

    return httpx.Client(transport=httpx.MockTransport(reply)), sent


# --- the limiter ---------------------------------------------------------------------------------


def test_two_limiters_sharing_one_redis_never_let_more_than_the_limit_through_in_any_second(
    redis_server: fakeredis.FakeServer,
) -> None:
    clock = FakeClock(1_700_000_000.95)  # just before a second boundary: a per-second bucket would let 2N through
    first, second = (
        RateLimit(on_redis(redis_server), "erp", per_second=5, max_wait_seconds=0, clock=clock) for _ in range(2)
    )
    let_through: list[float] = []

    for _step in range(400):  # 4 s in 10 ms steps; both processes try every step
        for limiter in (first, second):
            try:
                limiter.acquire("/orders")
            except Throttled:
                continue
            let_through.append(clock.now)
        clock.now += 0.010

    assert most_in_any_second(let_through) == 5
    assert len(let_through) >= 15, "the limit is a rate, not a ban: about 5 every 1.2 s go through"


def test_concurrent_threads_in_two_processes_stay_within_the_limit_together(redis_server: fakeredis.FakeServer) -> None:
    limiters = [RateLimit(on_redis(redis_server), "erp", per_second=10, max_wait_seconds=0.2) for _ in range(2)]
    let_through: list[float] = []
    lock = threading.Lock()
    until = time.monotonic() + 1.5

    def hammer(limiter: RateLimit) -> None:
        while time.monotonic() < until:
            try:
                limiter.acquire("/orders")
            except Throttled:
                continue
            with lock:
                let_through.append(time.monotonic())

    threads = [threading.Thread(target=hammer, args=(limiters[n % 2],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert most_in_any_second(let_through) <= 10
    assert 10 <= len(let_through) <= 20


def test_a_request_waits_briefly_for_a_slot_then_is_held_back_as_throttled() -> None:
    clock = FakeClock(1_700_000_000.0)
    limiter = RateLimit(LocalStore(), "erp", per_second=2, clock=clock, sleep=clock.sleep)
    limiter.acquire("/orders")
    limiter.acquire("/orders")

    with pytest.raises(Throttled) as held:
        limiter.acquire("/orders")

    assert held.value.system == "erp"
    assert held.value.retry_after is None
    assert "no free request slot within 1 s" in str(held.value)
    assert clock.slept, "it waited for a slot before giving up"
    assert sum(clock.slept) == pytest.approx(1.0, abs=1e-3), "and no longer than its bound"


def test_a_slot_that_frees_up_while_waiting_is_taken() -> None:
    clock = FakeClock(1_700_000_000.0)
    limiter = RateLimit(LocalStore(), "erp", per_second=1, max_wait_seconds=2.0, clock=clock, sleep=clock.sleep)
    limiter.acquire("/orders")

    limiter.acquire("/orders")

    assert (SLOTS - 1) * SLOT_MS / 1000 <= sum(clock.slept) <= SLOTS * SLOT_MS / 1000 + 0.05


def test_no_limit_lets_every_request_through_at_once() -> None:
    clock = FakeClock(1_700_000_000.0)
    limiter = RateLimit(LocalStore(), "erp", per_second=0, clock=clock, sleep=clock.sleep)

    for _ in range(1000):
        limiter.acquire("/orders")

    assert clock.slept == []


def test_a_pause_holds_requests_until_it_ends_even_without_a_limit(redis_server: fakeredis.FakeServer) -> None:
    paused = RateLimit(on_redis(redis_server), "erp", per_second=0)
    paused.pause(0.3)

    with pytest.raises(Throttled) as held:
        paused.acquire("/orders")
    time.sleep(0.35)
    paused.acquire("/orders")

    assert 0 < (held.value.retry_after or 0) <= 0.3
    assert "erp asked the fleet to wait" in str(held.value)


def test_a_shorter_pause_never_cuts_a_longer_one_short(redis_server: fakeredis.FakeServer) -> None:
    first, second = on_redis(redis_server), on_redis(redis_server)

    first.pause("flowfleet:downstream:erp:paused", 30)
    second.pause("flowfleet:downstream:erp:paused", 1)

    assert 29 < first.paused_for("flowfleet:downstream:erp:paused") <= 30
    assert RedisStore(fakeredis.FakeRedis(server=redis_server)).paused_for("flowfleet:downstream:erp:paused") > 29


def test_limits_of_different_systems_and_prefixes_do_not_share_slots(redis_server: fakeredis.FakeServer) -> None:
    clock = FakeClock(1_700_000_000.0)
    store = on_redis(redis_server)

    for system, prefix in (("erp", "flowfleet:"), ("channels", "flowfleet:"), ("erp", "flowfleet:tenant-b:")):
        RateLimit(store, system, per_second=1, prefix=prefix, max_wait_seconds=0, clock=clock).acquire("/x")

    with pytest.raises(Throttled):
        RateLimit(store, "erp", per_second=1, max_wait_seconds=0, clock=clock).acquire("/x")


def test_while_redis_does_not_answer_each_process_limits_itself_and_says_so(
    redis_server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.connected = False
    clock = FakeClock(1_700_000_000.0)
    limiter = RateLimit(on_redis(redis_server), "erp", per_second=1, max_wait_seconds=0, clock=clock)

    with caplog.at_level(logging.WARNING, logger="flowfleet.rate_limit"):
        limiter.acquire("/orders")
        with pytest.raises(Throttled):
            limiter.acquire("/orders")

    assert [r.getMessage() for r in caplog.records] == [
        "Redis did not answer (ConnectionError): downstream rate limits apply per process for the next 5 s"
    ]


# --- the HTTP adapter within the limit -------------------------------------------------------------


def test_a_429_answer_is_throttled_by_the_system_that_sent_it() -> None:
    with pytest.raises(Throttled) as throttled:
        raise_for_status("channels", "/prices", 429, "30")

    assert (throttled.value.system, throttled.value.retry_after) == ("channels", 30.0)
    with pytest.raises(TransientError) as unavailable:
        raise_for_status("channels", "/prices", 503, "30")
    assert not isinstance(unavailable.value, Throttled)


def test_a_429_with_retry_after_pauses_the_other_process_too(redis_server: fakeredis.FakeServer) -> None:
    busy_client, sent_by_first = answering(429, {"Retry-After": "30"})
    quiet_client, sent_by_second = answering(200)
    first = HttpDownstream(
        "erp", "http://erp", client=busy_client, rate_limit=RateLimit(on_redis(redis_server), "erp", per_second=50)
    )
    second = HttpDownstream(
        "erp", "http://erp", client=quiet_client, rate_limit=RateLimit(on_redis(redis_server), "erp", per_second=50)
    )
    throttled_before, held_before = requests_counted("erp", "throttled"), requests_counted("erp", "rate_limited")

    with pytest.raises(Throttled) as answered:
        first.post("/orders", {}, idempotency_key="k-1")
    with pytest.raises(Throttled) as held:
        second.post("/orders", {}, idempotency_key="k-2")

    assert answered.value.retry_after == 30.0
    assert 29.0 < (held.value.retry_after or 0) <= 30.0
    assert len(sent_by_first) == 1
    assert sent_by_second == [], "the pause holds the request back instead of sending it"
    assert requests_counted("erp", "throttled") == throttled_before + 1
    assert requests_counted("erp", "rate_limited") == held_before + 1
    first.close()
    second.close()


def test_a_429_without_retry_after_pauses_nobody(redis_server: fakeredis.FakeServer) -> None:
    busy_client, _ = answering(429)
    quiet_client, sent = answering(200)
    first = HttpDownstream(
        "erp", "http://erp", client=busy_client, rate_limit=RateLimit(on_redis(redis_server), "erp", per_second=50)
    )
    second = HttpDownstream(
        "erp", "http://erp", client=quiet_client, rate_limit=RateLimit(on_redis(redis_server), "erp", per_second=50)
    )

    with pytest.raises(Throttled):
        first.post("/orders", {}, idempotency_key="k-1")
    second.post("/orders", {}, idempotency_key="k-2")

    assert len(sent) == 1
    first.close()
    second.close()


# --- wiring: settings to adapters ------------------------------------------------------------------


def _noop(*_args: Any) -> None:
    return None


TWO_SYSTEMS = (Flow("orders", ("erp", "channels"), _noop),)


@pytest.fixture
def unreachable_systems(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Downstream URLs nothing listens on (port 9, discard): every request that goes out fails as 'unreachable'.

    A request that finds no free slot is held back at once, so what is held does not depend on timing.
    """
    monkeypatch.setattr(rate_limit, "MAX_WAIT_SECONDS", 0.0)
    return {"erp_url": "http://127.0.0.1:9", "channels_url": "http://127.0.0.1:9", "downstream_timeout_seconds": 0.5}


def _post_twice(adapter: Any) -> list[str]:
    """What became of two requests: 'sent' (and failed to connect) or 'held' (by the rate limit)."""
    fates = []
    for n in range(2):
        try:
            adapter.post("/orders", {}, idempotency_key=f"k-{n}")
        except Throttled:
            fates.append("held")
        except TransientError:
            fates.append("sent")
    return fates


def test_without_a_redis_url_each_process_keeps_its_own_limit_and_warns_once(
    unreachable_systems: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(**unreachable_systems, erp_rate_limit=1, channels_rate_limit=1)

    with caplog.at_level(logging.WARNING, logger="flowfleet.rate_limit"):
        first_process = http_downstream(settings, TWO_SYSTEMS)
        second_process = http_downstream(settings, TWO_SYSTEMS)

    assert _post_twice(first_process["erp"]) == ["sent", "held"]
    assert _post_twice(second_process["erp"]) == ["sent", "held"], "another process has a limit of its own"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, "one warning per process, not per system"
    assert all("FLOWFLEET_REDIS_URL is not set" in w and "per process" in w for w in warnings)
    for adapter in (*first_process.values(), *second_process.values()):
        adapter.close()


def test_with_a_redis_url_every_process_shares_one_limit(
    unreachable_systems: dict[str, Any],
    redis_server: fakeredis.FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    urls: list[str] = []

    def connect(url: str, **_options: Any) -> redis.Redis:
        urls.append(url)
        return fakeredis.FakeRedis(server=redis_server)

    monkeypatch.setattr(redis.Redis, "from_url", connect)
    settings = Settings(
        **unreachable_systems, erp_rate_limit=1, redis_url=SecretStr("redis://:hunter2@redis.internal:6379/0")
    )

    with caplog.at_level(logging.INFO, logger="flowfleet.rate_limit"):
        first_process = http_downstream(settings, TWO_SYSTEMS)
        second_process = http_downstream(settings, TWO_SYSTEMS)

    assert urls == ["redis://:hunter2@redis.internal:6379/0"] * 2
    assert _post_twice(first_process["erp"]) == ["sent", "held"]
    assert _post_twice(second_process["erp"]) == ["held", "held"], "the first process used the fleet's one slot"
    assert _post_twice(second_process["channels"]) == ["sent", "sent"], "channels has its own limit (50/s)"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "hunter2" not in caplog.text
    for adapter in (*first_process.values(), *second_process.values()):
        adapter.close()


class ClosingRedis(fakeredis.FakeRedis):
    """Remembers whether it was closed."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def test_closing_an_adapter_closes_the_redis_connection_of_its_limit(redis_server: fakeredis.FakeServer) -> None:
    connection = ClosingRedis(server=redis_server)
    client, _ = answering(200)
    erp = HttpDownstream(
        "erp", "http://erp", client=client, rate_limit=RateLimits(RedisStore(connection)).for_system("erp", 5)
    )
    erp.post("/orders", {}, idempotency_key="k")

    erp.close()

    assert connection.closed


# --- the failure policy: throttled tries have their own cap -----------------------------------------


def statuses(faults: PortFaults) -> list[int]:
    """What a dependency that throttles inside the handler answered (the relay's own throttling is tested
    with the relay): the message-level cap still guards every handler that can be told to slow down."""
    return [status for _path, _key, status in faults.requests]


def answers(*script: int) -> Callable[[str, Any, str, int], int]:
    """The ERP answers each try of a key with the next status of `script`, then 200."""
    return lambda _path, _payload, _key, attempt: script[attempt - 1] if attempt <= len(script) else 200


def test_a_throttled_message_is_retried_without_spending_its_attempts(
    fleet_runner: FleetRunner, faults: PortFaults
) -> None:
    faults.responder = answers(429, 429, 429, 429)  # 4 throttles: more than the 3 attempts, within the cap of 4
    fleet = fleet_runner()

    fleet.run(envelope(order_v2("ORD-300")))

    assert statuses(faults) == [429, 429, 429, 429, 200]
    assert list(fleet.systems["erp"].applied) == ["order-export:ORD-300"]
    assert (fleet.tally("processed"), fleet.tally("retried"), fleet.tally("dead_lettered")) == (1, 4, 0)
    assert fleet.dead_letters() == []


def test_throttles_and_server_errors_each_count_against_their_own_cap(
    fleet_runner: FleetRunner, faults: PortFaults
) -> None:
    faults.responder = answers(429, 503, 429, 503, 429)  # 5 failures, but only 2 of the 3 attempts spent
    fleet = fleet_runner()

    fleet.run(envelope(order_v2("ORD-301")))

    assert statuses(faults) == [429, 503, 429, 503, 429, 200]
    assert (fleet.tally("processed"), fleet.tally("dead_lettered")) == (1, 0)


def test_a_message_throttled_past_the_cap_is_dead_lettered_saying_how_often_and_by_whom(
    fleet_runner: FleetRunner, faults: PortFaults
) -> None:
    faults.responder = lambda *_: 429
    fleet = fleet_runner()

    fleet.run(envelope(order_v2("ORD-302")))

    assert statuses(faults) == [429] * (MAX_THROTTLED + 1)
    [dead] = fleet.dead_letters()
    assert dead["stage"] == "handler"
    assert dead["error_type"] == "Throttled"
    assert dead["error_message"] == (
        f"throttled {MAX_THROTTLED + 1} times by erp; final error: erp POST /orders answered 429"
    )
    assert dead["attempts"] == MAX_THROTTLED + 1
    assert list(fleet.systems["erp"].applied) == []


def test_an_exhausted_budget_still_dead_letters_after_its_attempts_and_counts_every_try(
    fleet_runner: FleetRunner, faults: PortFaults
) -> None:
    faults.responder = answers(503, 429, 503, 503)
    fleet = fleet_runner()

    fleet.run(envelope(order_v2("ORD-303")))

    assert statuses(faults) == [503, 429, 503, 503]
    [dead] = fleet.dead_letters()
    assert (
        dead["error_message"] == "retry budget exhausted after 3 attempts; final error: erp POST /orders answered 503"
    )
    assert dead["attempts"] == 4, "the archive counts every try, the throttled one too"
