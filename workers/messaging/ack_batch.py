"""Batched acks for one channel: the contiguous prefix of finished deliveries, acked with `multiple=True`.

Acking each message wakes the consumer's I/O loop once per message (`add_callback_threadsafe`). Here
a worker thread only marks its delivery finished; once the oldest deliveries are all finished, their
last tag is acked with `multiple=True` in one frame, every `batch` messages or after `interval`
seconds, whichever comes first. A message is marked finished only after its effect (or its retry or
dead letter) is durable, so a crash before the batched ack redelivers messages already applied, which
dedup turns into duplicates, and never loses one. Nacks and requeues stay individual: they go out in
the order they were made, before any multiple ack that spans their tags, so such an ack never
settles a message that was meant for the dead-letter queue or for another try.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

#: Seconds a finished delivery may wait for its batch to fill before it is acked anyway.
ACK_INTERVAL_S = 0.05

Operation = Callable[[], None]


class AckBatch:
    """Settles one channel's deliveries; `schedule` runs a callable on the connection's own thread."""

    def __init__(self, channel: Any, schedule: Callable[[Operation], None], *, batch: int, interval: float) -> None:
        self.channel = channel
        self.schedule = schedule
        self.batch = max(1, batch)
        self.interval = interval
        #: A finished delivery beyond an unfinished one is acked alone once this many wait behind it.
        self.blocked_limit = max(self.batch, 4 * self.batch)
        self._lock = threading.Lock()
        self._delivered: deque[int] = deque()
        #: Finished tags not yet in the prefix: True when they still need an ack, False when settled alone.
        self._finished: dict[int, bool] = {}
        self._waiting = 0  # how many of those still need an ack
        self._individual: list[Operation] = []
        self._ack_upto = 0
        self._pending = 0
        self._flush_scheduled = False
        self._timer_armed = False

    def delivered(self, tag: int) -> None:
        """Record a delivery, in the order the channel delivered them (the consumer's thread)."""
        with self._lock:
            self._delivered.append(tag)

    def ack(self, tag: int) -> None:
        """The delivery is done and its outcome durable: ack it with the next batch."""
        self._finish(tag, None)

    def settle_alone(self, tag: int, operation: Operation) -> None:
        """Send `operation` (a nack or requeue of `tag`) at once, before any later multiple ack."""
        self._finish(tag, operation)

    def _finish(self, tag: int, operation: Operation | None) -> None:
        with self._lock:
            if operation is not None:
                self._individual.append(operation)
            self._finished[tag] = operation is None
            self._waiting += operation is None
            delivered, finished = self._delivered, self._finished
            while delivered and delivered[0] in finished:
                head = delivered.popleft()
                if finished.pop(head):
                    self._waiting -= 1
                    self._ack_upto = head
                    self._pending += 1
            due = operation is not None or self._pending >= self.batch or self._waiting >= self.blocked_limit
            if due and not self._flush_scheduled:
                self._flush_scheduled = True
                callback: Operation | None = self.flush
            elif self._pending and not self._timer_armed and not self._flush_scheduled:
                self._timer_armed = True
                callback = self._arm_timer
            else:
                callback = None
        if callback is not None:
            try:
                self.schedule(callback)
            except Exception:
                with self._lock:  # the connection is gone; whoever settles next may schedule again
                    self._flush_scheduled = self._timer_armed = False
                raise

    def _arm_timer(self) -> None:
        connection = self.channel.connection
        connection.call_later(self.interval, self._on_timer)

    def _on_timer(self) -> None:
        with self._lock:
            self._timer_armed = False
        self.flush()

    def flush(self) -> None:
        """Send what is due: individual settlements first, then one multiple ack (the connection's thread)."""
        with self._lock:
            self._flush_scheduled = False
            individual, self._individual = self._individual, []
            upto, self._ack_upto, self._pending = self._ack_upto, 0, 0
            blocked = []
            if self._waiting >= self.blocked_limit:
                blocked = [tag for tag, needs_ack in self._finished.items() if needs_ack]
                self._waiting = 0
            for tag in blocked:
                self._finished[tag] = False
        if not self.channel.is_open:
            return  # the broker redelivers whatever this channel left unsettled
        for operation in individual:
            operation()
        if upto:
            self.channel.basic_ack(upto, multiple=True)
        for tag in blocked:
            self.channel.basic_ack(tag)
