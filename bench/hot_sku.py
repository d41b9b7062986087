"""A flash sale on one SKU: N orders for one SKU are applied as fast as N orders for N SKUs, downstream latency aside.

`python -m bench.hot_sku [--orders 400] [--threads 8] [--latency 0.05]` on the local PostgreSQL. Each of
`--threads` threads applies orders the way the pipeline does (dedup claim, the orders handler on SQL books,
the outbox recorder for the ERP and channels, one transaction each, or with `--group-commit` in the group
commit the worker threads share, FLOWFLEET_GROUP_COMMIT); a relay sends the deliveries to in-process fakes
that answer after `--latency` seconds. It prints orders applied per second for one hot SKU and for as many
SKUs as orders, their ratio, and the relay's deliveries per second. `--inline` instead calls the fakes
inside the transaction, as the fleet did before the outbox, for comparison. `--profile` (without
`--group-commit`) adds where each order's time went (bench.lock_profile): waiting for the stock rows' lock,
holding it, and the commit.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from bench.lock_profile import LockProfile
from bench.services import Database, envelope, order_data, prepare_schema
from contracts.envelope import decode_envelope
from contracts.published import REGISTRY
from contracts.registry import ParsedEvent
from handlers.downstream import Downstream
from workers.delivery.fake import FakeDownstream
from workers.fleet import relay
from workers.flows.orders import FLOW
from workers.runtime.group_commit import GroupCommitter
from workers.settings import Settings
from workers.store.db import make_engine
from workers.store.dedup import claim
from workers.store.outbox.recorder import Cause, OutboxRecorder
from workers.store.tables import deliveries


class SlowDownstream(FakeDownstream):
    """A downstream system that answers after `latency` seconds."""

    latency: float = 0.05

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None:
        time.sleep(self.latency)
        super().post(path, payload, idempotency_key=idempotency_key)


def apply_orders(
    engine: Engine,
    bodies: list[bytes],
    threads: int,
    systems: Mapping[str, Downstream],
    inline: bool,
    *,
    per_message: bool = False,
    lanes: int = 1,
    profile: LockProfile | None = None,
) -> float:
    """Apply every body on `threads` threads; return the seconds it took."""
    committer = GroupCommitter(engine, max_group=threads, lanes=lanes)
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)

    def run() -> None:
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            envelope_ = decode_envelope(body)
            parsed = REGISTRY.parse(envelope_, flow=FLOW.name)
            cause = Cause(FLOW.name, envelope_.contract, envelope_.version, envelope_.message_id, parsed.dedup_key)

            def unit(connection: Connection, parsed: ParsedEvent = parsed, cause: Cause = cause) -> None:
                envelope_ = parsed.envelope
                claim(
                    connection,
                    flow=FLOW.name,
                    contract=envelope_.contract,
                    dedup_key=parsed.dedup_key,
                    message_id=envelope_.message_id,
                    version=envelope_.version,
                )
                ports = systems if inline else {s: OutboxRecorder(connection, s, cause) for s in FLOW.systems}
                FLOW.apply(parsed, connection, ports)

            if per_message:
                with engine.connect() as connection:
                    transaction = connection.begin()
                    unit(connection)
                    committing = time.perf_counter()
                    transaction.commit()
                    if profile is not None:
                        profile.committed(committing, time.perf_counter())
            else:
                committer.run(unit)

    started = time.perf_counter()
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started


def send_all(engine: Engine, systems: Mapping[str, Downstream]) -> tuple[float, dict[str, int]]:
    """Run one process's relay (its default threads per system) until nothing is pending; seconds and statuses."""
    sender = relay(Settings(), engine, systems)
    started = time.perf_counter()
    sender.start()
    try:
        while True:
            with engine.connect() as connection:
                by_status = {
                    str(status): int(n)
                    for status, n in connection.execute(
                        select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
                    ).all()
                }
            if not by_status.get("pending"):
                return time.perf_counter() - started, by_status
            time.sleep(0.02)
    finally:
        sender.stop()


def scenario(label: str, skus: list[str], args: argparse.Namespace) -> dict[str, Any]:
    database = Database(label)
    try:
        prepare_schema(database)
        engine = make_engine(database.url)
        systems = {name: SlowDownstream(name) for name in FLOW.systems}
        for system in systems.values():
            system.latency = args.latency
        bodies = [envelope(order_data(f"ORD-{label}-{n}", skus[n % len(skus)])) for n in range(args.orders)]
        per_message = not args.group_commit
        profile = LockProfile(engine) if args.profile and per_message else None
        seconds = apply_orders(
            engine,
            bodies,
            args.threads,
            systems,
            args.inline,
            per_message=per_message,
            lanes=args.lanes,
            profile=profile,
        )
        result: dict[str, Any] = {
            "scenario": label,
            "orders": args.orders,
            "apply_seconds": round(seconds, 3),
            "orders_per_second": round(args.orders / seconds, 1),
        }
        if profile is not None:
            result["profile_ms_per_order"] = profile.summary(seconds)
        if not args.inline:
            took, by_status = send_all(engine, systems)
            sent = by_status.get("delivered", 0)
            result |= {
                "relay_seconds": round(took, 3),
                "deliveries_per_second": round(sent / took, 1),
                "deliveries": by_status,
            }
        engine.dispose()
        return result
    finally:
        database.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--inline", action="store_true", help="call downstream inside the transaction (before)")
    parser.add_argument("--group-commit", action="store_true", help="orders in the worker threads' group commit")
    parser.add_argument(
        "--lanes",
        type=int,
        default=Settings.model_fields["group_commit_lanes"].default,
        help="groups in flight with --group-commit (default: the product's FLOWFLEET_GROUP_COMMIT_LANES)",
    )
    parser.add_argument("--profile", action="store_true", help="time the lock wait, the lock hold and the commit")
    args = parser.parse_args()
    hot = scenario("hot", ["SKU-0"], args)
    spread = scenario("spread", [f"SKU-{n}" for n in range(args.orders)], args)
    ratio = hot["orders_per_second"] / spread["orders_per_second"]
    print(
        json.dumps(
            {
                "hot": hot,
                "spread": spread,
                "hot_vs_spread": round(ratio, 2),
                "inline": args.inline,
                "group_commit": args.group_commit,
                "lanes": args.lanes if args.group_commit else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
