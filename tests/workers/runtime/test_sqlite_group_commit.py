"""Group commit on SQLite: one transaction per group, each unit's failure its own, a commit failure everyone's."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, event, text

from workers.runtime.group_commit import GroupCommitter
from workers.store.db import make_engine


class Unit(threading.Thread):
    """A worker thread submitting one unit; keeps what the committer handed back to it."""

    def __init__(self, committer: GroupCommitter, unit: Callable[[Connection], object]) -> None:
        super().__init__(daemon=True)
        self.committer = committer
        self.unit = unit
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.committer.run(self.unit)
        except BaseException as error:  # the test inspects whatever reached this thread
            self.error = error


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'group.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE effects (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE)")
        connection.exec_driver_sql("CREATE TABLE parents (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql(
            "CREATE TABLE children (id INTEGER PRIMARY KEY,"
            " parent_id INTEGER REFERENCES parents(id) DEFERRABLE INITIALLY DEFERRED)"
        )
    yield engine
    engine.dispose()


@pytest.fixture
def commits(engine: Engine) -> list[int]:
    """One entry per transaction committed on the engine."""
    seen: list[int] = []
    event.listen(engine, "commit", lambda _connection: seen.append(1))
    return seen


def insert(name: str, *, then: Callable[[], None] = lambda: None) -> Callable[[Connection], str]:
    def unit(connection: Connection) -> str:
        connection.execute(text("INSERT INTO effects (name) VALUES (:name)"), {"name": name})
        then()
        return name

    return unit


def effects(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT name FROM effects ORDER BY seq")).scalars())


def queue_behind_a_busy_group(committer: GroupCommitter, *units: Callable[[Connection], object]) -> list[Unit]:
    """Start a unit that holds its group open, then submit `units` one after another so they queue in
    that order and form the next group; the first returned thread is the one that held the group."""
    holding, release = threading.Event(), threading.Event()

    def hold(connection: Connection) -> str:
        holding.set()
        release.wait()
        return insert("holder")(connection)

    holder = Unit(committer, hold)
    holder.start()
    holding.wait()
    threads = [holder]
    for number, unit in enumerate(units, start=1):
        thread = Unit(committer, unit)
        thread.start()
        while committer.queued < number:
            threading.Event().wait(0.001)
        threads.append(thread)
    release.set()
    for thread in threads:
        thread.join()
    return threads


class Refused(Exception):
    """The middle unit's own failure."""


def refuse() -> None:
    raise Refused("the middle one fails")


def test_a_failing_unit_is_rolled_back_alone_and_its_thread_receives_its_exception(
    engine: Engine, commits: list[int]
) -> None:
    committer = GroupCommitter(engine, max_group=8)

    _holder, first, middle, last = queue_behind_a_busy_group(
        committer, insert("first"), insert("middle", then=refuse), insert("last")
    )

    assert (first.error, first.result) == (None, "first")
    assert isinstance(middle.error, Refused)
    assert (last.error, last.result) == (None, "last")
    assert effects(engine) == ["holder", "first", "last"]  # the middle one's insert was rolled back to its savepoint
    assert len(commits) == 2  # the holder's group, then one commit for the three


def test_a_database_error_in_a_unit_leaves_the_group_usable(engine: Engine) -> None:
    committer = GroupCommitter(engine, max_group=8)

    _holder, first, duplicate, last = queue_behind_a_busy_group(
        committer, insert("same"), insert("same"), insert("after")
    )

    assert first.error is None
    assert duplicate.error is not None
    assert "UNIQUE" in str(duplicate.error)
    assert last.error is None
    assert effects(engine) == ["holder", "same", "after"]


def test_a_failed_commit_reaches_every_unit_of_the_group_and_keeps_none_of_its_effects(
    engine: Engine, commits: list[int]
) -> None:
    committer = GroupCommitter(engine, max_group=8)

    def orphan(connection: Connection) -> str:
        # Accepted now, refused by the deferred foreign key check at commit.
        connection.execute(text("INSERT INTO children (id, parent_id) VALUES (1, 404)"))
        return "orphan"

    _holder, first, breaker, last = queue_behind_a_busy_group(committer, insert("first"), orphan, insert("last"))

    for thread in (first, breaker, last):
        assert thread.error is not None
        assert "FOREIGN KEY" in str(thread.error)
        assert thread.result is None
    assert effects(engine) == ["holder"]
    assert len(commits) == 2  # attempted: the holder's, then the failed one


def test_units_are_applied_in_the_order_they_were_submitted(engine: Engine) -> None:
    committer = GroupCommitter(engine, max_group=8)
    names = [f"unit-{n}" for n in range(6)]

    queue_behind_a_busy_group(committer, *(insert(name) for name in names))

    assert effects(engine) == ["holder", *names]


def test_a_group_takes_at_most_max_group_units(engine: Engine, commits: list[int]) -> None:
    committer = GroupCommitter(engine, max_group=2)

    threads = queue_behind_a_busy_group(committer, *(insert(f"unit-{n}") for n in range(5)))

    assert all(thread.error is None for thread in threads)
    assert effects(engine) == ["holder", *(f"unit-{n}" for n in range(5))]
    assert len(commits) == 1 + 3  # the holder alone, then groups of 2, 2 and 1


def test_a_lone_unit_that_fails_commits_nothing(engine: Engine, commits: list[int]) -> None:
    committer = GroupCommitter(engine, max_group=8)

    with pytest.raises(Refused):
        committer.run(insert("alone", then=refuse))

    assert committer.run(insert("next")) == "next"
    assert effects(engine) == ["next"]
    assert len(commits) == 1


def meet(barrier: threading.Barrier) -> Callable[[Connection], str]:
    """A unit that returns only once the barrier's other party is inside a unit too (or breaks it after 2 s)."""

    def unit(connection: Connection) -> str:
        connection.execute(text("SELECT 1"))
        barrier.wait(timeout=2)
        return "met"

    return unit


@pytest.mark.parametrize(("lanes", "both_in_flight"), [(1, False), (2, True)])
def test_with_two_lanes_a_second_group_runs_while_the_first_is_still_open(
    engine: Engine, lanes: int, both_in_flight: bool
) -> None:
    committer = GroupCommitter(engine, max_group=8, lanes=lanes)
    barrier = threading.Barrier(2)

    threads = [Unit(committer, meet(barrier)), Unit(committer, meet(barrier))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    if both_in_flight:
        assert [(t.error, t.result) for t in threads] == [(None, "met"), (None, "met")]
    else:  # one lane: the second unit waits behind the first group, which waits for it in vain
        assert any(isinstance(t.error, threading.BrokenBarrierError) for t in threads)
