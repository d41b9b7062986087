"""How the long-running commands (worker, exporter) learn to stop: SIGTERM or SIGINT sets an event, logged."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType


def stop_on_signals(logger: logging.Logger, then: str) -> threading.Event:
    """An event that SIGTERM and SIGINT set, each logged as "received signal N; <then>"."""
    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("received signal %d; %s", signum, then)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stopping
