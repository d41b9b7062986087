"""A commit's nudge wakes one relay thread per system, not every thread of every system."""

from __future__ import annotations

import threading
import time

from workers.store.outbox.wakeup import DeliveriesRecorded


def _waiters(wakeup: DeliveriesRecorded, system: str, count: int, woke: list[str]) -> list[threading.Thread]:
    def wait() -> None:
        if wakeup.wait(system, timeout=5, seen=wakeup.generation(system)):
            woke.append(system)

    threads = [threading.Thread(target=wait, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _settle(until: float = 0.2) -> None:
    time.sleep(until)  # lets the waiters reach their wait, or the woken ones record it


def test_a_nudge_wakes_exactly_one_waiting_thread_of_each_system() -> None:
    wakeup = DeliveriesRecorded()
    woke: list[str] = []
    threads = _waiters(wakeup, "erp", 4, woke) + _waiters(wakeup, "channels", 4, woke)
    _settle()
    wakeup.notify()
    _settle()
    assert sorted(woke) == ["channels", "erp"]
    wakeup.wake_all()
    for thread in threads:
        thread.join(5)
    assert sorted(woke) == ["channels"] * 4 + ["erp"] * 4


def test_a_nudge_for_one_system_leaves_the_others_asleep() -> None:
    wakeup = DeliveriesRecorded()
    woke: list[str] = []
    threads = _waiters(wakeup, "erp", 2, woke) + _waiters(wakeup, "notify", 2, woke)
    _settle()
    wakeup.notify(["notify"])
    _settle()
    assert woke == ["notify"]
    wakeup.wake_all()
    for thread in threads:
        thread.join(5)


def test_a_nudge_that_came_before_the_wait_is_not_missed() -> None:
    wakeup = DeliveriesRecorded()
    seen = wakeup.generation("erp")
    wakeup.notify(["erp"])
    assert wakeup.wait("erp", timeout=0.01, seen=seen)
    assert not wakeup.wait("erp", timeout=0.01)
