"""`python -m bench.records_list`: the console's records list on PostgreSQL at 100,000 records, with and without 0005.

Seeds `tests.support.large_archive` into a database of its own, then times each selection's first
page (and the page's count) as the console runs them: at the head revision, then downgraded to 0004
(before the list's indexes). Medians of `--repeat` runs, in milliseconds, printed as a markdown table.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

from sqlalchemy import Engine

from bench.services import Database
from tests.support.large_archive import OPEN, RECORDS, seed_large_archive
from tests.support.migrations import downgrade
from workers.store.archive.pages import dead_letter_page
from workers.store.archive.records import DeadLetterFilter, count_dead_letters
from workers.store.db import make_engine, migrate

SELECTIONS = {
    "open (the list's default)": (DeadLetterFilter(status="open"), None),
    "open, a later page": (DeadLetterFilter(status="open"), OPEN // 2),
    "open, one flow": (DeadLetterFilter(status="open", flow="payments"), None),
    "open, one group": (DeadLetterFilter(status="open", fingerprint="fp7"), None),
}


def _median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _measure(engine: Engine, repeat: int) -> dict[str, tuple[float, float]]:
    found = {}
    with engine.connect() as connection:
        for label, (where, before) in SELECTIONS.items():
            page = _median_ms(functools.partial(dead_letter_page, connection, where, before=before, limit=50), repeat)
            count = _median_ms(functools.partial(count_dead_letters, connection, where), repeat)
            found[label] = (page, count)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.records_list", description=__doc__)
    parser.add_argument("--repeat", type=int, default=30, help="runs per figure (the median is shown)")
    args = parser.parse_args(argv)
    database = Database("records_list")
    engine = make_engine(database.url)
    try:
        migrate(engine)
        seed_large_archive(engine)
        with_indexes = _measure(engine, args.repeat)
        downgrade(engine, "0004")
        engine.dispose()
        database.execute("VACUUM ANALYZE dead_letters")
        without = _measure(engine, args.repeat)
    finally:
        engine.dispose()
        database.drop()
    print(f"{RECORDS:,} dead letters, {OPEN:,} open (the oldest); median of {args.repeat} runs, ms\n")
    print("| selection | page at 0004 | page at 0005 | count at 0004 | count at 0005 |")
    print("|---|---:|---:|---:|---:|")
    for label, (page, count) in with_indexes.items():
        old_page, old_count = without[label]
        print(f"| {label} | {old_page:.2f} | {page:.2f} | {old_count:.2f} | {count:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
