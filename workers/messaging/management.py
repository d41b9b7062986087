"""A small client of the RabbitMQ management HTTP API, for what AMQP cannot tell: bindings, consumers, depth."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import httpx

#: The columns `queue_stats` asks for: the name, then the numbers it reports.
QUEUE_STATS = ("name", "messages_ready", "messages_unacknowledged", "consumers")


class ManagementApi:
    """The management API at `url` (credentials may sit in the URL, as in `http://user:pass@host:15672`)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        auth = (parts.username or "guest", parts.password or "guest")
        netloc = parts.hostname or "localhost"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._client = httpx.Client(base_url=base, auth=auth, timeout=timeout)

    def queue_bindings(self, vhost: str, queue: str) -> set[tuple[str, str]]:
        """(exchange, routing key) of every binding of `queue`, the default exchange's left out."""
        response = self._client.get(f"/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}/bindings")
        response.raise_for_status()
        return {(b["source"], b["routing_key"]) for b in response.json() if b.get("source")}

    def queue_stats(self, vhost: str) -> dict[str, dict[str, int]]:
        """Ready and unacked messages and consumers of each queue in `vhost`, by queue name.

        A statistic the broker has not computed yet (a queue declared a moment ago) is left out.
        """
        response = self._client.get(f"/api/queues/{quote(vhost, safe='')}", params={"columns": ",".join(QUEUE_STATS)})
        response.raise_for_status()
        return {
            str(queue["name"]): {key: int(queue[key]) for key in QUEUE_STATS[1:] if isinstance(queue.get(key), int)}
            for queue in response.json()
        }

    def close(self) -> None:
        self._client.close()
