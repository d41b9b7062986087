"""AckBatch acks only the finished prefix, in one multiple ack, and sends nacks before any ack that spans them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workers.messaging.ack_batch import AckBatch


class RecordingChannel:
    """What the batch sent, in order; scheduled callbacks run when `run()` is called (the I/O thread)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.scheduled: list[Callable[[], None]] = []
        self.timers: list[Callable[[], None]] = []
        self.is_open = True
        self.connection = self  # call_later lives on the connection

    def call_later(self, _delay: float, callback: Callable[[], None]) -> None:
        self.timers.append(callback)

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.sent.append(("ack", tag, multiple))

    def nack(self, tag: int) -> Callable[[], None]:
        return lambda: self.sent.append(("nack", tag))

    def run(self) -> None:
        while self.scheduled:
            self.scheduled.pop(0)()


def _batch(channel: RecordingChannel, size: int = 3) -> AckBatch:
    batch = AckBatch(channel, channel.scheduled.append, batch=size, interval=60)
    for tag in range(1, 21):
        batch.delivered(tag)
    return batch


def test_finished_deliveries_behind_an_unfinished_one_wait_and_then_go_in_one_multiple_ack() -> None:
    channel = RecordingChannel()
    batch = _batch(channel)
    for tag in (2, 3, 4):
        batch.ack(tag)
    channel.run()
    assert channel.sent == [], "the interval has not passed"

    batch.ack(1)
    channel.run()

    assert channel.sent == [("ack", 4, True)]


def test_a_nack_inside_the_prefix_goes_out_before_the_multiple_ack_that_spans_it() -> None:
    channel = RecordingChannel()
    batch = _batch(channel)
    batch.ack(1)
    batch.settle_alone(2, channel.nack(2))
    batch.ack(3)
    batch.ack(4)
    channel.run()

    assert channel.sent == [("nack", 2), ("ack", 4, True)]


def test_a_multiple_ack_never_names_a_tag_that_was_settled_alone() -> None:
    channel = RecordingChannel()
    batch = _batch(channel, size=2)
    batch.ack(1)
    batch.settle_alone(2, channel.nack(2))
    channel.run()

    assert channel.sent == [("nack", 2), ("ack", 1, True)]


def test_many_finished_deliveries_behind_a_stuck_one_are_acked_one_by_one() -> None:
    channel = RecordingChannel()
    batch = _batch(channel, size=1)  # blocked limit: 4
    for tag in (2, 3, 4, 5):
        batch.ack(tag)
    channel.run()

    assert channel.sent == [("ack", 2, False), ("ack", 3, False), ("ack", 4, False), ("ack", 5, False)]
    for tag in (7, 8, 9):
        batch.ack(tag)
    channel.run()
    assert channel.sent[4:] == [], "three more behind the stuck one wait: below the limit, no wake-up"
    assert channel.scheduled == []
    batch.ack(1)
    batch.ack(6)
    channel.run()
    assert channel.sent[4:] == [("ack", 9, True)], "one multiple ack; the prefix skips what was acked alone"


def test_nothing_is_sent_on_a_channel_that_closed() -> None:
    channel = RecordingChannel()
    batch = _batch(channel, size=1)
    batch.ack(1)
    channel.is_open = False
    channel.run()

    assert channel.sent == []


def test_a_batch_that_does_not_fill_goes_out_when_the_interval_passes() -> None:
    channel = RecordingChannel()
    batch = _batch(channel, size=10)
    batch.ack(1)
    batch.ack(2)
    channel.run()
    assert channel.sent == []

    for timer in channel.timers:
        timer()

    assert channel.sent == [("ack", 2, True)]
