"""Each downstream system's request rate is shared by the whole fleet: request slots and 429 pauses live in Redis."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import redis
from dramatiq.rate_limits.backends.redis import RedisBackend
from dramatiq.rate_limits.backends.stub import StubBackend

from handlers.errors import Throttled
from workers.settings import Settings, redact_url

logger = logging.getLogger("flowfleet.rate_limit")

#: Requests are counted in slots of this many milliseconds, and one may go out while the last SLOTS
#: slots hold fewer than the limit. Eleven slots would make any N+1 requests more than one second
#: apart as we send them; the twelfth is a margin for the time they take to reach the other side, so
#: it too never sees more than N in any second. (Dramatiq's WindowRateLimiter counts whole calendar
#: seconds, which lets 2N through around a second boundary.)
SLOT_MS = 100
SLOTS = 12
#: How long a request waits for a free slot before it gives its worker thread back by raising Throttled.
MAX_WAIT_SECONDS = 1.0
#: Once Redis failed to answer, the process limits itself alone for this long before asking Redis again.
REDIS_RETRY_SECONDS = 5.0
#: Redis is asked before every request: it must answer fast or not at all.
REDIS_TIMEOUT_SECONDS = 0.5

T = TypeVar("T")


class _Counters(Protocol):
    """The part of Dramatiq's rate-limiter backends used here: add one to a key unless the window is full."""

    def incr_and_sum(self, key: str, keys: Callable[[], list[str]], amount: int, maximum: int, ttl: int) -> bool: ...


def _take(counters: _Counters, keys: Callable[[], list[str]], limit: int) -> bool:
    return bool(counters.incr_and_sum(keys()[0], keys, 1, maximum=limit, ttl=(SLOTS + 1) * SLOT_MS))


class LimitStore(Protocol):
    """Where request slots and pauses are kept: Redis for the whole fleet, or this process's memory."""

    def take_slot(self, keys: Callable[[], list[str]], limit: int) -> bool:
        """Count one request in `keys()[0]` unless the slots `keys()` already hold `limit`; say whether it was."""
        ...

    def pause(self, key: str, seconds: float) -> None:
        """Hold requests for `seconds` from now, unless a longer pause is already recorded."""
        ...

    def paused_for(self, key: str) -> float:
        """Seconds the pause at `key` still lasts, 0 when there is none."""
        ...

    def close(self) -> None: ...


class LocalStore:
    """This process only: Dramatiq's in-memory StubBackend for the slots, a dict for the pauses."""

    def __init__(self) -> None:
        self._counters: _Counters = StubBackend()  # type: ignore[no-untyped-call]
        self._paused_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def take_slot(self, keys: Callable[[], list[str]], limit: int) -> bool:
        return _take(self._counters, keys, limit)

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            self._paused_until[key] = max(until, self._paused_until.get(key, 0.0))

    def paused_for(self, key: str) -> float:
        with self._lock:
            return max(0.0, self._paused_until.get(key, 0.0) - time.monotonic())

    def close(self) -> None:
        """Nothing to release."""


class RedisStore:
    """The whole fleet: Dramatiq's RedisBackend for the slots, and a key that expires when a pause ends.

    While Redis does not answer, the process limits itself alone (a LocalStore, with a warning) rather
    than stop every downstream effect, and asks Redis again REDIS_RETRY_SECONDS later.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._counters: _Counters = RedisBackend(client=client)  # type: ignore[no-untyped-call]
        self._local = LocalStore()
        self._down_until = 0.0

    def take_slot(self, keys: Callable[[], list[str]], limit: int) -> bool:
        return self._either(lambda: _take(self._counters, keys, limit), lambda: self._local.take_slot(keys, limit))

    def pause(self, key: str, seconds: float) -> None:
        milliseconds = max(1, int(seconds * 1000))

        def extend(pipe: redis.client.Pipeline) -> None:
            if int(pipe.pttl(key)) < milliseconds:
                pipe.multi()
                pipe.set(key, b"1", px=milliseconds)

        self._either(lambda: self.client.transaction(extend, key), lambda: None)
        self._local.pause(key, seconds)  # this process holds off even while Redis does not answer

    def paused_for(self, key: str) -> float:
        remaining_ms = self._either(lambda: int(self.client.pttl(key)), lambda: 0)
        return max(remaining_ms / 1000, self._local.paused_for(key))

    def close(self) -> None:
        self.client.close()

    def _either(self, on_redis: Callable[[], T], locally: Callable[[], T]) -> T:
        if time.monotonic() < self._down_until:
            return locally()
        try:
            return on_redis()
        except redis.RedisError as error:
            self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
            logger.warning(
                "Redis did not answer (%s): downstream rate limits apply per process for the next %.0f s",
                type(error).__name__,
                REDIS_RETRY_SECONDS,
            )
            return locally()


class RateLimit:
    """One downstream system's share of the fleet: a free slot before each request, and none while paused.

    `per_second` 0 means no limit; a pause asked for by a 429 is honoured all the same.
    """

    def __init__(
        self,
        store: LimitStore,
        system: str,
        *,
        per_second: int,
        prefix: str = "flowfleet:",
        max_wait_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.system = system
        self.per_second = per_second
        self.max_wait_seconds = MAX_WAIT_SECONDS if max_wait_seconds is None else max_wait_seconds
        self._store = store
        self._key = f"{prefix}downstream:{system}"
        self._clock = clock
        self._sleep = sleep

    @property
    def pause_key(self) -> str:
        return f"{self._key}:paused"

    def acquire(self, path: str) -> None:
        """Return once a request to `path` may go out; raise Throttled while the system is paused, or when
        no slot frees up within `max_wait_seconds` (the message is retried later, the thread is not held)."""
        deadline = self._clock() + self.max_wait_seconds
        while True:
            paused = self._store.paused_for(self.pause_key)
            if paused > 0:
                raise Throttled(
                    f"{self.system} POST {path} held back: {self.system} asked the fleet to wait {paused:.1f} s more",
                    system=self.system,
                    retry_after=paused,
                )
            if self.per_second == 0 or self._store.take_slot(self._slot_keys, self.per_second):
                return
            now = self._clock()
            if now >= deadline:
                raise Throttled(
                    f"{self.system} POST {path} held back: no free request slot within {self.max_wait_seconds:g} s"
                    f" (the fleet's limit is {self.per_second}/s)",
                    system=self.system,
                )
            until_next_slot = (SLOT_MS - (now * 1000) % SLOT_MS) / 1000
            self._sleep(min(until_next_slot + random.uniform(0, SLOT_MS / 4000), deadline - now))

    def pause(self, seconds: float) -> None:
        """Hold every process's requests to this system for `seconds` (what its Retry-After asked for)."""
        if seconds > 0:
            self._store.pause(self.pause_key, seconds)

    def close(self) -> None:
        self._store.close()

    def _slot_keys(self) -> list[str]:
        """The keys of the current slot and the SLOTS - 1 before it, current first."""
        slot = int(self._clock() * 1000) // SLOT_MS
        return [f"{self._key}:requests@{slot - back}" for back in range(SLOTS)]


class RateLimits:
    """The rate limits of every downstream system, over one store; `close` releases its connections."""

    def __init__(self, store: LimitStore, *, prefix: str = "flowfleet:") -> None:
        self.store = store
        self.prefix = prefix

    def for_system(self, system: str, per_second: int) -> RateLimit:
        return RateLimit(self.store, system, per_second=per_second, prefix=self.prefix)

    def close(self) -> None:
        self.store.close()


def rate_limits(settings: Settings) -> RateLimits:
    """Shared through FLOWFLEET_REDIS_URL; without it, per process (with a warning). Keys carry the queue prefix."""
    prefix = f"flowfleet:{settings.queue_prefix}"
    if settings.redis_url is None:
        logger.warning(
            "FLOWFLEET_REDIS_URL is not set: each downstream system's rate limit applies per process, "
            "not to the whole fleet"
        )
        return RateLimits(LocalStore(), prefix=prefix)
    url = settings.redis_url.get_secret_value()
    client = redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )
    logger.info("downstream rate limits are shared through %s", redact_url(url))
    return RateLimits(RedisStore(client), prefix=prefix)


def per_second(settings: Settings, system: str) -> int:
    """FLOWFLEET_<SYSTEM>_RATE_LIMIT: requests per second for the whole fleet, 0 for no limit."""
    value: int = getattr(settings, f"{system}_rate_limit", 0)
    return value
