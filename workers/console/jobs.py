"""Replays the console starts run in threads of its own; the page that follows them reads the archive, not the thread.

So a reload, a second browser or a restarted console shows the same progress, and a replay this
process lost (it was stopped) is resumed through the replayer's own resume.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from contracts.published import REGISTRY
from workers.deadletters.replay import Publisher, Replayer, ReplayError
from workers.deadletters.report import ReplayReport
from workers.settings import Settings
from workers.store.archive.pages import action_owned_by

log = logging.getLogger("flowfleet.console")

#: How a job gets a publisher, and how it closes it.
OpenPublisher = Callable[[Settings], tuple[Publisher, Callable[[], None]]]
#: How long a request waits for the replay it started to record its action.
START_TIMEOUT = 15.0


def broker_publisher(settings: Settings) -> tuple[Publisher, Callable[[], None]]:
    """A confirmed, persistent, mandatory publisher on the fleet's broker, as `dlq replay` uses."""
    from workers.messaging.broker import FleetBroker  # noqa: PLC0415  # only replays need the broker

    broker = FleetBroker(settings.broker_url.get_secret_value(), middleware=[])
    return broker, broker.close


class ReplayJobs:
    """The replays running in this process, and how to stop them all when the console stops."""

    def __init__(self, engine: Engine, settings: Settings, open_publisher: OpenPublisher) -> None:
        self.engine = engine
        self.settings = settings
        self.open_publisher = open_publisher
        self._running: list[tuple[Replayer, threading.Thread]] = []
        self._lock = threading.Lock()

    def start(self, run: Callable[[Replayer], ReplayReport]) -> int:
        """Run a replay (start or resume) in a thread; returns its action id once the archive has it."""
        publisher, close = self.open_publisher(self.settings)
        replayer = Replayer(self.engine, publisher, exchange=self.settings.exchange, registry=REGISTRY)
        failed: list[str] = []

        def work() -> None:
            try:
                run(replayer)
            except ReplayError as error:
                failed.append(str(error))
            except Exception as error:
                failed.append(f"the replay stopped: {type(error).__name__}")
                log.exception("a console replay stopped")
            finally:
                close()

        thread = threading.Thread(target=work, name=f"console-replay-{replayer.owner[:8]}", daemon=True)
        with self._lock:
            self._running = [(r, t) for r, t in self._running if t.is_alive()] + [(replayer, thread)]
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with self.engine.connect() as connection:
                action_id = action_owned_by(connection, replayer.owner)
            if action_id is not None:
                return action_id
            if not thread.is_alive():
                break
            time.sleep(0.05)
        thread.join(timeout=0.5)
        raise ReplayError(failed[0] if failed else "the replay did not start in time")

    def stop_all(self, timeout: float = 10.0) -> None:
        """Interrupt every replay after the message in hand (each can be resumed) and wait for its thread."""
        with self._lock:
            running, self._running = self._running, []
        for replayer, _thread in running:
            replayer.interrupt()
        for _replayer, thread in running:
            thread.join(timeout)
