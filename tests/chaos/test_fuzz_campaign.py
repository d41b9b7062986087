"""A fuzz campaign against a real worker: whatever a publisher sends is archived with a stage, and the queue flows.

Hypothesis generates bodies (random bytes, truncated JSON, a wrong type at every field of an
`order.created` envelope, deep nesting, huge strings around the 1 MiB cap, unknown contracts and
versions, non-UTF-8) and each is published with plain pika, confirmed, to `commerce.events` or
straight to the `orders` queue, into one `flowfleet worker` process on RabbitMQ and PostgreSQL.
Every body is checked to be invalid before it is sent, so each one must end up in the archive.

Size: FLOWFLEET_FUZZ_BODIES (default 300); tests/chaos/README.md has the 10,000-body command, and
the bugs the campaign found, each with a deterministic regression test at the end of this file.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pika
import pytest
from dramatiq import Message
from dramatiq.common import dq_name
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from contracts.envelope import MAX_BODY_BYTES, decode_envelope
from contracts.errors import ContractViolation, UndecodableMessage
from contracts.published import REGISTRY
from workers.messaging.ingress import DRAMATIQ_FORMAT, FORMAT_HEADER, decode_body, encode_body, message_from_delivery

pytestmark = pytest.mark.integration

BODIES = int(os.environ.get("FLOWFLEET_FUZZ_BODIES", "300"))
EXCHANGE = "commerce.events"
QUEUE = "orders"
STAGES = {"decode", "contract", "expired", "handler"}
#: What the worker's settings call too old (the default: 7 days).
MAX_EVENT_AGE = timedelta(days=7)


# -- what a valid envelope looks like, and how to spoil it -------------------------------------------


def valid_envelope(order_id: str = "ORD-FUZZ-1") -> dict[str, Any]:
    return {
        "message_id": str(uuid.uuid4()),
        "contract": "order.created",
        "version": 2,
        "occurred_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
        "producer": "storefront",
        "correlation_id": "checkout-fuzz",
        "data": {
            "order_id": order_id,
            "channel": "storefront",
            "customer": {"customer_id": "C-77", "email": "zoe@example.com", "name": "Zoë Ångström"},
            "ship_to": {
                "name": "Zoë",
                "line1": "Hauptstraße 5",
                "city": "Köln",
                "postal_code": "50667",
                "country": "DE",
            },
            "currency": "EUR",
            "lines": [
                {"line_id": "1", "sku": "MUG-BLUE", "quantity": 1, "unit_price_minor": 1200, "title": "Tasse"},
                {"line_id": "2", "sku": "TEE-RED-M", "quantity": 2, "unit_price_minor": 1999},
            ],
            "total_minor": 5198,
        },
    }


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON document (dict keys and list indexes), the document's leaves and inner nodes alike."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


ENVELOPE_PATHS = paths(valid_envelope())


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    if isinstance(document, dict):
        return {**document, head: replaced(document[head], tuple(rest), value)}
    copy = list(document)
    copy[head] = replaced(copy[head], tuple(rest), value)
    return copy


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@st.composite
def wrong_type_at_a_field(draw: st.DrawFn) -> bytes:
    path = draw(st.sampled_from(ENVELOPE_PATHS))
    return dumps(replaced(valid_envelope(), path, draw(json_values)))


@st.composite
def field_removed(draw: st.DrawFn) -> bytes:
    path = draw(st.sampled_from([p for p in ENVELOPE_PATHS if isinstance(p[-1], str)]))
    document = valid_envelope()
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return dumps(document)


@st.composite
def truncated_json(draw: st.DrawFn) -> bytes:
    body = dumps(valid_envelope(draw(st.from_regex(r"ORD-[A-Z0-9]{1,12}", fullmatch=True))))
    return body[: draw(st.integers(min_value=0, max_value=len(body) - 1))]


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([2, 10, 100, 900, 1_000, 5_000, 100_000]))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    nested = opener * depth + "1" + closer * depth
    if draw(st.booleans()):
        return nested.encode()  # the whole body
    return dumps(valid_envelope())[:-1] + b', "x": ' + nested.encode() + b"}"  # inside an envelope


@st.composite
def deep_data(draw: st.DrawFn) -> bytes:
    """Nesting where the contract expects a flat value: the contract, not the parser, must say no."""
    depth = draw(st.integers(min_value=1, max_value=400))
    path = draw(st.sampled_from([p for p in ENVELOPE_PATHS if p[0] == "data"]))
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return dumps(replaced(valid_envelope(), path, value))


@st.composite
def huge_string(draw: st.DrawFn) -> bytes:
    """A long string in one field: mostly well below the 1 MiB cap, sometimes right at it or above."""
    if draw(st.integers(min_value=0, max_value=30)) == 0:
        size = draw(
            st.sampled_from([MAX_BODY_BYTES // 4 - 500, MAX_BODY_BYTES - 600, MAX_BODY_BYTES, 2 * MAX_BODY_BYTES])
        )
    else:
        size = draw(st.integers(min_value=201, max_value=100_000))
    path = draw(st.sampled_from([p for p in ENVELOPE_PATHS if isinstance(p[-1], str)]))
    return dumps(replaced(valid_envelope(), path, draw(st.sampled_from("xé€😀")) * size))


@st.composite
def unknown_contract_or_version(draw: st.DrawFn) -> bytes:
    document = valid_envelope()
    if draw(st.booleans()):
        document["version"] = draw(st.integers(min_value=-5, max_value=2**63) | st.sampled_from([0, 3, 7, 99]))
    else:
        names = sorted(c.name for c in REGISTRY if c.flow != "orders")
        document["contract"] = draw(st.text(min_size=1, max_size=60) | st.sampled_from(names))
    return dumps(document)


@st.composite
def not_utf8(draw: st.DrawFn) -> bytes:
    text = json.dumps(valid_envelope(), ensure_ascii=False)
    encoding = draw(st.sampled_from(["latin-1", "utf-16", "utf-32", "cp1252", "utf-8-with-a-bad-byte"]))
    if encoding == "utf-8-with-a-bad-byte":
        body = text.encode("utf-8")
        at = draw(st.integers(min_value=0, max_value=len(body)))
        return body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])) + body[at:]
    return text.encode(encoding, errors="replace")


random_bytes = st.binary(max_size=2_000)
not_an_object = st.builds(dumps, json_values)

FUZZ = st.one_of(
    random_bytes,
    truncated_json(),
    wrong_type_at_a_field(),
    field_removed(),
    deep_nesting(),
    deep_data(),
    huge_string(),
    unknown_contract_or_version(),
    not_utf8(),
    not_an_object,
)


@st.composite
def forged_retry(draw: st.DrawFn) -> bytes:
    """A body in Dramatiq's own format, as flowfleet enqueues its retries, carrying one of the bodies above."""
    # Offsets from now, not absolute times: Hypothesis needs each draw's bounds to stay the same.
    options: dict[str, int] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "eta": st.integers(min_value=-(10**9), max_value=2_000)
                | st.integers(min_value=3_600_000, max_value=2**60),
                "attempt": st.integers(min_value=0, max_value=2**40),
                "first_failed_at": st.integers(min_value=-(10**9), max_value=0),
            },
        )
    )
    now_ms = int(time.time() * 1000)
    options = {key: value if key == "attempt" else max(0, now_ms + value) for key, value in options.items()}
    message: Message[Any] = Message(
        queue_name=draw(st.sampled_from([QUEUE, dq_name(QUEUE)])),
        actor_name=QUEUE,
        args=(),
        kwargs={
            **encode_body(draw(FUZZ)),
            "headers": draw(st.dictionaries(st.text(max_size=10), json_leaves, max_size=3)),
        },
        options=options,
        message_id=str(uuid.uuid4()),
        message_timestamp=now_ms,
    )
    return message.encode()


def as_run(body: bytes, marked: bool) -> bytes:
    """The body the worker runs (and archives) for this delivery on the orders queue."""
    headers = {FORMAT_HEADER: DRAMATIQ_FORMAT} if marked else {}
    return decode_body(message_from_delivery(QUEUE, QUEUE, headers, body).kwargs)


def is_invalid(body: bytes) -> bool:
    """Whether the worker must dead-letter this body (so the campaign never sends one it would apply)."""
    try:
        envelope = decode_envelope(body)
        REGISTRY.parse(envelope, flow="orders")
    except (UndecodableMessage, ContractViolation):
        return True
    return datetime.now(UTC) - envelope.occurred_at > MAX_EVENT_AGE


def edge_cases() -> list[bytes]:
    """Bodies every campaign sends, whatever Hypothesis draws: empty, and exactly at and just over the size cap."""
    envelope = valid_envelope("ORD-EDGE")
    envelope["data"]["customer"]["name"] = ""
    base = dumps(envelope)
    pad = MAX_BODY_BYTES - len(base)
    envelope["data"]["customer"]["name"] = "x" * pad
    at_cap = dumps(envelope)
    envelope["data"]["customer"]["name"] = "x" * (pad + 1)
    over_cap = dumps(envelope)
    assert (len(at_cap), len(over_cap)) == (MAX_BODY_BYTES, MAX_BODY_BYTES + 1)
    bodies = [b"", b" ", b"null", b"{}", at_cap, over_cap, b"[" * 200_000]
    assert all(is_invalid(body) for body in bodies)
    return bodies


# -- publishing ------------------------------------------------------------------------------------


class Publisher:
    """One confirmed, mandatory pika channel, as an upstream team would publish."""

    def __init__(self, url: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def send(self, body: bytes, *, direct: bool, headers: dict[str, Any] | None = None) -> None:
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json", headers=headers
        )
        exchange, routing_key = ("", QUEUE) if direct else (EXCHANGE, "order.created")
        self.channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)

    def close(self) -> None:
        """Close it, also when the broker already dropped it (pika finds out only now)."""
        if self.connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                self.connection.close()


def run_campaign(publisher: Publisher, count: int) -> tuple[collections.Counter[str], set[bytes]]:
    """Publish `count` distinct invalid bodies that Hypothesis generates.

    Returns how many went which way, and the bodies that were not forged retries (whose attempt
    count is the publisher's, not the worker's).
    """
    sent: set[bytes] = set()
    plain: set[bytes] = set()
    tally: collections.Counter[str] = collections.Counter()

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        drawn=st.tuples(FUZZ, st.sampled_from([False] * 9 + [True])) | st.tuples(forged_retry(), st.just(True)),
        direct=st.booleans(),
    )
    def publish_one(drawn: tuple[bytes, bool], direct: bool) -> None:
        # `marked`: with the header flowfleet marks its own retries with; the body must still be treated as input.
        body, marked = drawn
        archived_as = as_run(body, marked)
        # Not `assume`: a body already sent would fail on Hypothesis' replay of the same example.
        if archived_as in sent or len(sent) >= count or not is_invalid(archived_as):
            return
        publisher.send(body, direct=direct, headers={FORMAT_HEADER: DRAMATIQ_FORMAT} if marked else None)
        sent.add(archived_as)
        if archived_as == body:
            plain.add(body)
        tally["direct" if direct else "via exchange"] += 1
        tally["marked as a retry"] += marked
        tally["forged retries"] += archived_as != body
        tally["over 1 MiB"] += len(archived_as) > MAX_BODY_BYTES

    for body in edge_cases():
        publisher.send(body, direct=False)
        sent.add(body)
        plain.add(body)
        tally["edge cases"] += 1
        tally["over 1 MiB"] += len(body) > MAX_BODY_BYTES
    for _ in range(5):  # each call draws afresh; repeated or valid draws were skipped
        if len(sent) >= count:
            break
        publish_one()
    # Should Hypothesis still fall short, random bytes make up the count.
    while len(sent) < count:
        body = os.urandom(16) + base64.b64encode(os.urandom(24))
        publisher.send(body, direct=False)
        sent.add(body)
        plain.add(body)
        tally["topped up"] += 1
    tally["published"] = len(sent)
    return tally, plain


# -- the campaign ------------------------------------------------------------------------------------


@pytest.mark.timeout(max(300, 120 + BODIES // 10))
def test_fuzzed_bodies_never_crash_or_stall_a_worker_and_each_is_archived_with_a_stage(
    worker: Callable[..., Any], vhost: str, database: Any, rabbit: Any, wait_for: Callable[..., Any]
) -> None:
    running = worker()
    started = time.monotonic()
    publisher = Publisher(vhost)
    try:
        tally, plain = run_campaign(publisher, BODIES)
        published_s = time.monotonic() - started

        # Every body reaches the archive (each one is distinct, so each is its own dead letter).
        deadline = time.monotonic() + 60 + BODIES * 0.05
        while (archived := int(database.scalar("SELECT count(*) FROM dead_letters") or 0)) < BODIES:
            assert time.monotonic() < deadline, (
                f"{archived} of {BODIES} bodies archived; ready in orders / orders.XQ: "
                f"{rabbit.queue_state('orders')[0]} / {rabbit.queue_state('orders.XQ')[0]}"
            )
            time.sleep(0.2)
        archived_s = time.monotonic() - started
        assert running.process.poll() is None, f"the worker exited with {running.process.returncode}"

        # No stall: a valid order published after the campaign is applied promptly, by the same process.
        order = valid_envelope("ORD-AFTER-FUZZ")
        # On a fresh connection: at 10,000 bodies the campaign's connection sat silent longer than the broker's
        # heartbeat timeout (Hypothesis drawing deep bodies on loaded cores, the wait above) and was closed.
        publisher.close()
        publisher = Publisher(vhost)
        publisher.send(json.dumps(order).encode(), direct=False)
        applied_at = time.monotonic()
        wait_for(lambda: database.orders("ORD-AFTER-FUZZ"), timeout=30, what="the order published after the campaign")
        after_s = time.monotonic() - applied_at
    finally:
        publisher.close()

    rows = database.rows("SELECT stage, attempts, error_type, flow, body FROM dead_letters")
    stages = collections.Counter(row["stage"] for row in rows)
    errors = collections.Counter(f"{row['stage']}:{row['error_type']}" for row in rows)
    print(
        f"\nfuzz campaign: {BODIES} bodies, published in {published_s:.1f} s, all archived after {archived_s:.1f} s; "
        f"the next valid order applied in {after_s:.2f} s\n  {dict(tally)}\n  stages {dict(stages)}\n"
        f"  errors {dict(errors.most_common())}"
    )
    assert len(rows) == BODIES, f"{len(rows)} dead letters for {BODIES} bodies"
    assert set(stages) <= STAGES, f"unexpected stages {set(stages) - STAGES}"
    assert {row["flow"] for row in rows} == {"orders"}
    retried = [
        {k: v for k, v in row.items() if k != "body"}
        for row in rows
        if bytes(row["body"]) in plain and row["stage"] in ("decode", "contract") and row["attempts"] != 1
    ]
    assert not retried, f"decode/contract failures are dead-lettered on the first attempt, not: {retried[:3]}"
    assert running.process.poll() is None, "the worker is still the same, running process"
    assert "Traceback" not in running.log(), "a thread of the worker crashed:\n" + running.log()[-5000:]


def wait_for_archive(database: Any, rabbit: Any, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (archived := int(database.scalar("SELECT count(*) FROM dead_letters") or 0)) < count:
        ready, consumers = rabbit.queue_state(QUEUE)
        assert time.monotonic() < deadline, (
            f"{archived} of {count} dead letters archived after {timeout:.0f} s; "
            f"{ready} ready in {QUEUE} ({consumers} consumers), {rabbit.queue_state('orders.XQ')[0]} in orders.XQ"
        )
        time.sleep(0.2)


# The campaign's findings, one deterministic regression test each (tests/chaos/README.md, "Known bugs").


def test_a_dead_letter_the_archive_cannot_store_does_not_hold_up_the_ones_behind_it(
    worker: Callable[..., Any], vhost: str, database: Any, rabbit: Any
) -> None:
    worker()
    publisher = Publisher(vhost)
    try:
        publisher.send(dumps({**valid_envelope(), "version": 2**31}), direct=False)
        publisher.send(dumps({**valid_envelope(), "version": 9, "producer": "store\x00front"}), direct=False)
        publisher.send(json.dumps({**valid_envelope(), "data": {"order_id": "\ud800"}}).encode(), direct=False)
        publisher.send(b"not json, and archived behind the three above", direct=False)
    finally:
        publisher.close()
    wait_for_archive(database, rabbit, 4)


def test_bodies_nested_too_deeply_for_the_json_parser_leave_the_worker_threads_running(
    worker: Callable[..., Any], vhost: str, database: Any, rabbit: Any
) -> None:
    worker()  # two worker threads (tests/integration/conftest.py WORKER_ENV)
    publisher = Publisher(vhost)
    try:
        for depth in (100_000, 200_000, 300_000):
            publisher.send(b"[" * depth, direct=False)
        publisher.send(b"not json, archived after the deep ones", direct=False)
    finally:
        publisher.close()
    wait_for_archive(database, rabbit, 4)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"queue_name": dq_name(QUEUE)}, id="naming the delay queue"),
        pytest.param({"eta": 2**50}, id="with an eta years ahead"),
    ],
)
def test_a_forged_retry_does_not_hold_a_prefetch_slot_of_the_flow_queue(
    options: dict[str, Any], worker: Callable[..., Any], vhost: str, database: Any, rabbit: Any
) -> None:
    worker(FLOWFLEET_PREFETCH="2")
    publisher = Publisher(vhost)
    try:
        for n in range(2):
            message: Message[Any] = Message(
                queue_name=options.get("queue_name", QUEUE),
                actor_name=QUEUE,
                args=(),
                kwargs={"body": f"forged retry {n}", "headers": {}},
                options={k: v for k, v in options.items() if k != "queue_name"},
                message_id=str(uuid.uuid4()),
                message_timestamp=int(time.time() * 1000),
            )
            publisher.send(message.encode(), direct=False, headers={FORMAT_HEADER: DRAMATIQ_FORMAT})
        publisher.send(b"not json, published after the forged retries", direct=False)
    finally:
        publisher.close()
    wait_for_archive(database, rabbit, 3)
