"""Group commit: units of work that worker threads submit together share one transaction, one savepoint each.

A commit is a WAL flush and a pool checkout; paying it once per message is most of a small message's
database cost. A worker thread hands its unit (a callable taking the transaction's Connection) to the
process's GroupCommitter and blocks until that unit's fate is known. Whatever units wait while a group
is being applied form the next group, in the order they were submitted, up to `max_group`: an idle
process adds no latency, a busy one commits once per group.

Leaders and followers, no committer thread of its own: up to `lanes` groups are in flight at once,
each on its own connection. A thread that finds a lane free leads a group headed by its own unit, with
whatever units wait; the others wait, and when a group ends the oldest waiting thread leads the next in
that lane. With one lane every statement of the process runs on one connection in turn; a second lane
lets one group's round trips and commit overlap another's. A message is handed across threads at most
once (to learn its fate), and a lone message runs on its own thread exactly as it did without group
commit.

Each unit of a group of several runs after its own SAVEPOINT. A unit that raises is rolled back to it
(its effect, locks included, undone; the others kept) and its exception is re-raised in its own thread,
so the failure policy, metrics and logs see it as before. A savepoint is never released: the commit
ends them all, one round trip fewer per unit. When the rollback to a savepoint, the commit or the
connection fails, every unit of the group still waiting for its fate gets that error (a transient
failure each unit retries on its own path). A unit's thread returns only after the commit returned,
so a message is acked only once its effect is durable.

A unit that waits for a row lock would stall every unit queued behind its group. On PostgreSQL a
group's transaction therefore waits at most `lock_wait_ms` for any lock: a unit that waited longer
(lock_not_available) is rolled back to its savepoint and, once the group committed, applied again in
a transaction of its own on its own thread, where it waits as long as the lock is held, as it did
before group commit. Deadlocks inside a savepoint roll back that unit only, a transient failure.

A unit runs on whichever thread leads its group: it must take all it needs as arguments (not
thread-local state such as Dramatiq's current message) and do its logging after it returned.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")

#: How long a unit may wait for a lock inside a group before it is applied alone instead (PostgreSQL).
LOCK_WAIT_MS = 50
#: PostgreSQL's lock_not_available, raised when a statement waited longer than lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"


def _waited_too_long_for_a_lock(error: BaseException) -> bool:
    return getattr(getattr(error, "orig", None), "sqlstate", None) == _LOCK_NOT_AVAILABLE


class _Ticket(Generic[T]):
    """One submitted unit: its fate, and what its thread waits on (the fate, or its turn to lead)."""

    __slots__ = ("alone", "error", "failed_alone", "lead", "ready", "result", "unit")

    def __init__(self, unit: Callable[[Connection], T]) -> None:
        self.unit = unit
        self.ready = threading.Event()
        self.lead = False
        self.result: T | None = None
        self.error: BaseException | None = None
        #: Set once the unit raised and its savepoint was rolled back: a later group error does not replace it.
        self.failed_alone = False
        #: Set when it waited too long for a lock in its group: its thread applies it again on its own.
        self.alone = False

    def outcome(self) -> T:
        if self.error is not None:
            error, self.error = self.error, None  # the traceback must not keep the group's frames alive
            raise error
        return self.result  # type: ignore[return-value]  # set by the group that ran it; None when T is


class GroupCommitter:
    """Applies submitted units in groups: one transaction and one commit per group, one savepoint per unit."""

    def __init__(self, engine: Engine, *, max_group: int, lanes: int = 1, lock_wait_ms: int = LOCK_WAIT_MS) -> None:
        self.engine = engine
        self.max_group = max(1, max_group)
        self.lanes = max(1, lanes)
        self._bounded_lock_wait = (
            f"SET LOCAL lock_timeout = {int(lock_wait_ms)}" if engine.dialect.name == "postgresql" else None
        )
        self._lock = threading.Lock()
        #: Followers, oldest first; a leader's own ticket is never in it.
        self._waiting: deque[_Ticket[object]] = deque()
        self._leaders = 0

    @property
    def queued(self) -> int:
        """How many submitted units wait for a group to take them."""
        with self._lock:
            return len(self._waiting)

    def run(self, unit: Callable[[Connection], T]) -> T:
        """Apply `unit` in the next group; return what it returned once that group committed, or raise its error."""
        ticket = _Ticket(unit)
        with self._lock:
            ticket.lead = self._leaders < self.lanes
            if ticket.lead:
                self._leaders += 1
            else:
                self._waiting.append(ticket)  # type: ignore[arg-type]  # the queue holds tickets of any result type
        if not ticket.lead:
            ticket.ready.wait()
        if ticket.lead:
            self._lead(ticket)  # type: ignore[arg-type]  # as above
        if ticket.alone:
            with self.engine.begin() as connection:
                return unit(connection)
        return ticket.outcome()

    def _lead(self, head: _Ticket[object]) -> None:
        """Run a group headed by this thread's own ticket, with the oldest waiting ones; then pass the lane on."""
        with self._lock:
            group = [head, *(self._waiting.popleft() for _ in range(min(self.max_group - 1, len(self._waiting))))]
        try:
            self._apply(group)
        finally:
            with self._lock:
                successor = self._waiting.popleft() if self._waiting else None
                if successor is None:
                    self._leaders -= 1
                else:
                    successor.lead = True
            if successor is not None:
                successor.ready.set()
            for ticket in group[1:]:
                ticket.ready.set()

    def _apply(self, group: list[_Ticket[object]]) -> None:
        try:
            with self.engine.connect() as connection, connection.begin():
                if self._bounded_lock_wait is not None:
                    connection.exec_driver_sql(self._bounded_lock_wait)
                if len(group) == 1:
                    group[0].result = group[0].unit(connection)  # alone: its error rolls back the whole transaction
                else:
                    for number, ticket in enumerate(group):
                        self._apply_after_savepoint(connection, f"unit_{number}", ticket)
        except BaseException as error:  # the group's failure is each waiting unit's failure
            lone_wait = len(group) == 1 and _waited_too_long_for_a_lock(error)
            for ticket in group:
                if lone_wait:
                    ticket.alone = True
                elif not ticket.failed_alone:
                    ticket.result, ticket.error = None, error

    @staticmethod
    def _apply_after_savepoint(connection: Connection, savepoint: str, ticket: _Ticket[object]) -> None:
        connection.exec_driver_sql(f"SAVEPOINT {savepoint}")
        try:
            ticket.result = ticket.unit(connection)
        except BaseException as error:  # handed to the unit's own thread, re-raised there
            connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {savepoint}")  # if this fails, the group fails
            if _waited_too_long_for_a_lock(error):
                ticket.alone = ticket.failed_alone = True
            else:
                ticket.error, ticket.failed_alone = error, True
