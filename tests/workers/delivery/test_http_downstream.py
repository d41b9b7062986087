"""The HTTP adapter against a real local server: headers sent, answers and timeouts classified."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from handlers.errors import PermanentError, TransientError
from workers.delivery.http import HttpDownstream, header_value


class Script:
    """What the server answers next, and what it received."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], float]] = []
        self.received: list[tuple[str, str | None, dict[str, object]]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            script.received.append(
                (self.path, self.headers.get("Idempotency-Key"), json.loads(self.rfile.read(length)))
            )
            status, headers, delay = script.answers.pop(0) if script.answers else (200, {}, 0.0)
            time.sleep(delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            """Quiet: the test asserts on `script.received` instead."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", script
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_an_effect_is_posted_as_json_with_its_idempotency_key(server: tuple[str, Script]) -> None:
    url, script = server
    erp = HttpDownstream("erp", url, timeout=2)

    erp.post("/orders", {"order_id": "ORD-1"}, idempotency_key="order-export:ORD-1")

    assert script.received == [("/orders", "order-export:ORD-1", {"order_id": "ORD-1"})]
    erp.close()


def test_a_409_means_the_other_side_already_has_it(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers.append((409, {}, 0.0))
    erp = HttpDownstream("erp", url, timeout=2)

    erp.post("/orders", {"order_id": "ORD-1"}, idempotency_key="k")

    assert len(script.received) == 1
    erp.close()


def test_a_503_with_retry_after_is_transient_and_carries_the_wait(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers.append((503, {"Retry-After": "7"}, 0.0))
    erp = HttpDownstream("erp", url, timeout=2)

    with pytest.raises(TransientError) as raised:
        erp.post("/orders", {}, idempotency_key="k")

    assert raised.value.retry_after == 7.0
    assert "503" in str(raised.value)
    erp.close()


def test_a_400_is_permanent(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers.append((400, {}, 0.0))
    erp = HttpDownstream("erp", url, timeout=2)

    with pytest.raises(PermanentError, match="400"):
        erp.post("/orders", {}, idempotency_key="k")
    erp.close()


def test_a_slow_answer_times_out_as_a_transient_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers.append((200, {}, 1.0))
    erp = HttpDownstream("erp", url, timeout=0.2)

    with pytest.raises(TransientError, match="timed out"):
        erp.post("/orders", {}, idempotency_key="k")
    erp.close()


def test_an_unreachable_system_is_a_transient_error() -> None:
    erp = HttpDownstream("erp", "http://127.0.0.1:9/", timeout=0.5)

    with pytest.raises(TransientError, match="erp POST /orders failed"):
        erp.post("/orders", {}, idempotency_key="k")
    erp.close()


#: Keys the fleet has always sent for plain-ASCII ids: they must never change (the ERP dedups by them).
PINNED_KEYS = [
    "order-export:ORD-1001",
    "order-cancel:ORD-2?force=true#",
    "atp:order.cancelled:ORD-1:TEE-RED-M",
    "price:TEE-RED-M:EUR:2026-11-26T00:00:00+00:00",
    "notify:payment-failed:PAY-2:capture",
    "return-refund:RCV 1",
]


@pytest.mark.parametrize("key", PINNED_KEYS)
def test_a_plain_ascii_idempotency_key_is_sent_as_it_always_was(server: tuple[str, Script], key: str) -> None:
    url, script = server

    HttpDownstream("erp", url, timeout=2).post("/orders", {}, idempotency_key=key)

    assert script.received[0][1] == key


@pytest.mark.parametrize(
    ("key", "sent"),
    [
        ("order-export:ORD-3 Ä€", "~order-export%3AORD-3%20%C3%84%E2%82%AC"),
        ("order-export:ORD-4\r\nX-Admin: yes", "~order-export%3AORD-4%0D%0AX-Admin%3A%20yes"),
        ("~order-export:ORD-5", "~~order-export%3AORD-5"),
    ],
)
def test_any_other_key_is_sent_encoded_the_same_way_every_time(server: tuple[str, Script], key: str, sent: str) -> None:
    url, script = server
    erp = HttpDownstream("erp", url, timeout=2)

    erp.post("/orders", {}, idempotency_key=key)
    erp.post("/orders", {}, idempotency_key=key)

    assert [received[1] for received in script.received] == [sent, sent]
    assert header_value(key) == sent


def test_a_request_that_cannot_be_built_is_permanent_and_names_what_could_not_be_sent(
    server: tuple[str, Script],
) -> None:
    url, script = server
    erp = HttpDownstream("erp", url, timeout=2)

    with pytest.raises(PermanentError, match=r"erp POST /orders/a\\r\\n cannot be sent: .*path"):
        erp.post("/orders/a\r\n", {}, idempotency_key="k")
    with pytest.raises(PermanentError, match=r"erp POST /orders cannot be sent: .*body"):
        erp.post("/orders", {"amount": float("nan")}, idempotency_key="k")

    assert script.received == []
