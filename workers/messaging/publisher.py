"""Publishing envelopes with pipelined publisher confirms: a window of messages in flight, none unaccounted.

Each message is published persistent and `mandatory`; the broker's confirm (ack or nack) and any
basic.return (unroutable) are matched back to the message, so the report says for every input
whether the broker took it. Confirms are pipelined over an async connection, not one blocking round
trip per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.channel import Channel
from pika.frame import Method
from pika.spec import Basic

SEQUENCE_HEADER = "x-flowfleet-publish-seq"


@dataclass(frozen=True)
class Outgoing:
    routing_key: str
    body: bytes
    message_id: str | None = None


@dataclass
class PublishReport:
    confirmed: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    #: The connection never opened: nothing was sent.
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


class ConfirmedPublisher:
    """Publishes to one exchange; at most `window` messages await their confirm at once."""

    def __init__(self, parameters: pika.URLParameters, exchange: str, *, window: int = 256) -> None:
        self.parameters = parameters
        self.exchange = exchange
        self.window = window

    def publish(self, messages: Iterable[Outgoing]) -> PublishReport:
        run = _Run(self, enumerate(messages))
        connection = pika.SelectConnection(
            self.parameters,
            on_open_callback=run.on_connection_open,
            on_open_error_callback=run.on_connection_error,
            on_close_callback=run.on_connection_closed,
        )
        run.connection = connection
        connection.ioloop.start()
        if run.error is not None:
            run.account_for_the_rest(run.error)
        return run.report


class _Run:
    def __init__(self, publisher: ConfirmedPublisher, messages: Iterator[tuple[int, Outgoing]]) -> None:
        self.publisher = publisher
        self.messages = messages
        self.report = PublishReport()
        self.connection: pika.SelectConnection | None = None
        self.channel: Channel | None = None
        self.pending: dict[int, int] = {}  # delivery tag -> input index
        self.returned: dict[int, str] = {}  # input index -> reason
        self.next_tag = 0
        self.exhausted = False
        self.error: str | None = None

    def on_connection_open(self, connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=self.on_channel_open)

    def on_connection_error(self, _connection: Any, error: Exception) -> None:
        self.error = f"could not connect to the broker: {error!r}"
        self.report.unreachable = True
        self._stop()

    def on_connection_closed(self, _connection: Any, reason: Exception) -> None:
        if self.pending or not self.exhausted:
            self.error = self.error or f"broker connection closed with messages unconfirmed: {reason!r}"
        self._stop()

    def on_channel_open(self, channel: Channel) -> None:
        self.channel = channel
        channel.add_on_return_callback(self.on_return)
        channel.add_on_close_callback(self.on_channel_closed)
        channel.confirm_delivery(self.on_confirm, callback=lambda _frame: self.fill())

    def on_channel_closed(self, _channel: Channel, reason: Exception) -> None:
        if self.pending or not self.exhausted:
            self.error = self.error or f"broker closed the channel: {reason!r}"
        if self.connection is not None and self.connection.is_open:
            self.connection.close()

    def fill(self) -> None:
        assert self.channel is not None
        while not self.exhausted and len(self.pending) < self.publisher.window:
            item = next(self.messages, None)
            if item is None:
                self.exhausted = True
                break
            index, outgoing = item
            properties = pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent,
                content_type="application/json",
                message_id=outgoing.message_id,
                headers={SEQUENCE_HEADER: index},
            )
            self.channel.basic_publish(
                self.publisher.exchange, outgoing.routing_key, outgoing.body, properties, mandatory=True
            )
            self.next_tag += 1
            self.pending[self.next_tag] = index
        if self.exhausted and not self.pending:
            self.channel.close()

    def on_return(self, _channel: Channel, method: Basic.Return, properties: Any, _body: bytes) -> None:
        index = (properties.headers or {}).get(SEQUENCE_HEADER)
        if isinstance(index, int):
            self.returned[index] = (
                f"unroutable: no queue is bound to {method.routing_key!r} on {method.exchange!r} ({method.reply_text})"
            )

    def on_confirm(self, frame: Method) -> None:
        method = frame.method
        tags = [t for t in self.pending if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            index = self.pending.pop(tag, None)
            if index is None:
                continue
            if isinstance(method, Basic.Nack):
                self.report.failed[index] = "nacked by the broker (not stored)"
            elif index in self.returned:
                self.report.failed[index] = self.returned.pop(index)
            else:
                self.report.confirmed += 1
        self.fill()

    def account_for_the_rest(self, error: str) -> None:
        """After a lost connection, every message not confirmed is reported as such, never dropped."""
        for index in self.pending.values():
            self.report.failed[index] = f"unconfirmed (the broker may or may not have it): {error}"
        self.pending.clear()
        for index, _outgoing in self.messages:
            self.report.failed[index] = f"not sent: {error}"

    def _stop(self) -> None:
        if self.connection is not None:
            self.connection.ioloop.stop()
