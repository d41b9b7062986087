"""Each flow's queue depth for the overview, from the RabbitMQ management API when one is configured.

Without FLOWFLEET_MANAGEMENT_URL (the embedded demo) the overview shows no depth; a broker that does
not answer shows as unknown, never as an error page.
"""

from __future__ import annotations

import logging

import httpx
import pika

from workers.messaging.management import ManagementApi
from workers.settings import Settings

log = logging.getLogger("flowfleet.console")


def queue_depths(settings: Settings, flows: list[str]) -> dict[str, dict[str, int]] | None:
    """Ready and unacked messages of each flow's work queue; None when unknown."""
    if settings.management_url is None:
        return None
    api = ManagementApi(settings.management_url.get_secret_value(), timeout=2.0)
    try:
        vhost = pika.URLParameters(settings.broker_url.get_secret_value()).virtual_host
        stats = api.queue_stats(vhost)
    except httpx.HTTPError as error:
        log.warning("queue depth unavailable: %s", type(error).__name__)
        return None
    finally:
        api.close()
    return {
        flow: {
            "ready": stats.get(settings.queue_name(flow), {}).get("messages_ready", 0),
            "unacked": stats.get(settings.queue_name(flow), {}).get("messages_unacknowledged", 0),
        }
        for flow in flows
    }
