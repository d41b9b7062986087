"""One measured process: a consumer (bare pika, the fleet, Celery, a minimal actor) or a publisher.

Run by bench.run as `python -m bench.consumer '<json spec>'`. It prints `READY` once it is about
to consume and `RESULT <json>` when the spec's message count was handled, then exits. CPU time is
`time.process_time()` of this process (all its threads), measured from the first message handled
to the last, so start-up and imports are left out; RSS is read from /proc/self/status.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pika


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Meter:
    """Counts handled messages; remembers the window from the first to the `target`-th, and RSS at checkpoints."""

    target: int
    checkpoints: tuple[int, ...] = ()
    dbname: str | None = None
    warmup: int = 0
    count: int = 0
    started: tuple[float, float] | None = None
    finished: tuple[float, float] | None = None
    rss: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    pg_cpu_start: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ready(self) -> None:
        if self.dbname:
            from bench import services

            self.pg_cpu_start = services.pg_backend_cpu_seconds(self.dbname)
        print("READY", flush=True)

    def tick(self, latency_s: float | None = None) -> None:
        with self._lock:
            self.count += 1
            if self.count == 1:
                self.started = (time.perf_counter(), time.process_time())
            if latency_s is not None and self.count > self.warmup:
                self.latencies_ms.append(latency_s * 1000)
            if self.count in self.checkpoints:
                self.rss[str(self.count)] = rss_kib()
            if self.count == self.target:
                self.finished = (time.perf_counter(), time.process_time())
                self.done.set()

    def figures(self, *, window: int, wall: float, cpu: float, rss: int | None, rss_at: Any) -> dict[str, Any]:
        """Throughput and CPU per message over `window` messages, with the PostgreSQL backends' CPU when measured."""
        result: dict[str, Any] = {
            "messages": self.target,
            "wall_s": wall,
            "cpu_s": cpu,
            "msgs_per_s": window / wall if wall > 0 else None,
            "cpu_us_per_msg": cpu / window * 1e6 if window else None,
            "rss_kib": rss,
            "rss_at": rss_at,
        }
        if self.dbname and self.pg_cpu_start is not None:
            from bench import services

            pg_end = services.pg_backend_cpu_seconds(self.dbname)
            if pg_end is not None:
                result["pg_cpu_s"] = pg_end - self.pg_cpu_start
                result["total_cpu_us_per_msg"] = (cpu + result["pg_cpu_s"]) / window * 1e6
        return result

    def result(self, **extra: Any) -> dict[str, Any]:
        assert self.started is not None and self.finished is not None
        result = (
            self.figures(
                window=self.target - 1,
                wall=self.finished[0] - self.started[0],
                cpu=self.finished[1] - self.started[1],
                rss=rss_kib(),
                rss_at=self.rss,
            )
            | extra
        )
        if self.latencies_ms:
            ordered = sorted(self.latencies_ms)
            result["latency_ms"] = {
                "n": len(ordered),
                "p50": ordered[len(ordered) // 2],
                "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
                "max": ordered[-1],
            }
        return result


def report(result: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(result), flush=True)


# -- bare pika -------------------------------------------------------------------------------------


def bare_pika(spec: dict[str, Any], meter: Meter) -> None:
    """The limit of the Python client path: consume, ack, nothing else."""
    connection = pika.BlockingConnection(pika.URLParameters(spec["url"]))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=spec["prefetch"])

    def on_message(channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        channel.basic_ack(method.delivery_tag)
        meter.tick()

    channel.basic_consume(spec["queue"], on_message)
    meter.ready()
    while not meter.done.is_set():
        connection.process_data_events(time_limit=0.1)
    report(meter.result())
    connection.close()


# -- the fleet -------------------------------------------------------------------------------------


class NoDatabase:
    """Stands in for the engine when the pipeline runs without a database: `begin()` opens nothing."""

    class _Dialect:
        name = "none"

    class _Nothing:
        def __enter__(self) -> NoDatabase._Nothing:
            return self

        def __exit__(self, *_exc: object) -> None:
            return None

        def begin(self) -> NoDatabase._Nothing:
            return self

        def exec_driver_sql(self, *_args: object) -> None:
            return None

    dialect = _Dialect()

    def begin(self) -> NoDatabase._Nothing:
        return self._Nothing()

    def connect(self) -> NoDatabase._Nothing:
        return self._Nothing()

    def dispose(self) -> None:
        return None


def _apply_for(handler: str) -> Callable[..., object]:
    from sqlalchemy import text

    def noop(_parsed: Any, _connection: Any, _downstream: Any) -> object:
        return None

    insert_effect = text("INSERT INTO bench_effects (message_id, at) VALUES (:id, now())")

    def insert(parsed: Any, connection: Any, _downstream: Any) -> object:
        connection.execute(insert_effect, {"id": parsed.envelope.message_id})
        return None

    if handler == "noop":
        return noop
    if handler == "insert":
        return insert
    raise ValueError(handler)


def fleet(spec: dict[str, Any], meter: Meter) -> None:
    """flowfleet's own worker, assembled as workers.cli.worker_process does, with the spec's flow and handler."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import dramatiq
    from pydantic import SecretStr

    import workers.runtime.pipeline
    from workers.cli.worker_process import declare_topology
    from workers.delivery.fake import FakeDownstream
    from workers.fleet import Fleet, middleware, register_actors, topology
    from workers.flows import catalog, orders
    from workers.flows.flow import Flow
    from workers.messaging.broker import FleetBroker
    from workers.settings import Settings
    from workers.store.db import make_engine

    settings = Settings(
        broker_url=SecretStr(spec["url"]),
        database_url=SecretStr(spec.get("db") or "sqlite://"),
        queue_prefix=spec["prefix"],
        exchange=spec["exchange"],
        worker_threads=spec["threads"],
        group_commit=spec.get("group_commit", False),
        prefetch=spec["prefetch"],
        **({"group_commit_lanes": spec["group_commit_lanes"]} if spec.get("group_commit_lanes") else {}),
    )
    handler = spec["handler"]
    if handler == "orders":
        flow = orders.FLOW
    elif handler == "catalog":
        flow = catalog.FLOW
    else:
        flow = Flow(name=orders.FLOW.name, systems=(), apply=_apply_for("noop" if handler == "minimal" else handler))
    if not spec.get("dedup", True) or not spec.get("db"):
        # Dedup off: the claim is skipped (always "first"); the effect's transaction stays.
        workers.runtime.pipeline.claim = lambda *_args, **_kwargs: True  # type: ignore[attr-defined]
    if not spec.get("db"):
        # No database: the archive's reads and writes in the message's transaction find nothing to do.
        workers.runtime.pipeline.close_superseded = lambda *_args, **_kwargs: 0  # type: ignore[attr-defined]
        workers.runtime.pipeline.releasable = lambda *_args, **_kwargs: []  # type: ignore[attr-defined]
    engine: Any = make_engine(spec["db"]) if spec.get("db") else NoDatabase()
    outcomes = _counting_outcomes(spec, meter)
    plan = topology(settings, (flow,))
    declare_topology(settings, plan)
    if handler == "minimal":
        broker = FleetBroker(spec["url"], middleware=[m() for m in dramatiq.middleware.default_middleware])
    else:
        broker = FleetBroker(spec["url"], middleware=middleware(settings, outcomes))
    fleet = Fleet(
        settings=settings,
        broker=broker,
        engine=engine,
        downstream={system: FakeDownstream(system) for system in flow.systems},
        outcomes=outcomes,
        flows=(flow,),
    )
    if handler == "minimal":
        _register_minimal_actor(dramatiq, broker, settings.queue_name(flow.name), engine, meter)
    else:
        register_actors(fleet)
    _run(spec, meter, fleet, plan.delivery_limits())


class SharedCount(Meter):
    """A child's meter in a several-process run: every handled message adds to a counter all children share."""

    def __init__(self, counter: Any) -> None:
        super().__init__(target=2**62)
        self.counter = counter

    def ready(self) -> None:
        return None

    def tick(self, latency_s: float | None = None) -> None:
        with self.counter.get_lock():
            self.counter.value += 1


def _process_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a live process, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)


def fleet_processes(spec: dict[str, Any], meter: Meter) -> None:
    """`processes` fleet workers of `threads` threads each on one queue (forked, as a supervisor would start
    them), counted together; CPU is the children's, from /proc, from the first message handled to the last."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    counter = context.Value("q", 0)
    children = [
        context.Process(target=fleet, args=({**spec, "processes": 1}, SharedCount(counter)), daemon=True)
        for _ in range(spec["processes"])
    ]
    for child in children:
        child.start()
    pids = [child.pid for child in children if child.pid is not None]
    meter.ready()
    deadline = time.monotonic() + spec["timeout"]
    while counter.value == 0 and time.monotonic() < deadline:
        time.sleep(0.002)
    started = (time.perf_counter(), sum(_process_seconds(pid) for pid in pids), counter.value)
    while counter.value < meter.target and time.monotonic() < deadline:
        time.sleep(0.002)
    if counter.value < meter.target:
        print(f"TIMEOUT after {counter.value} of {meter.target} messages", flush=True)
        os._exit(3)
    finished = (time.perf_counter(), sum(_process_seconds(pid) for pid in pids), counter.value)
    result = meter.figures(
        window=finished[2] - started[2],
        wall=finished[0] - started[0],
        cpu=finished[1] - started[1],
        rss=sum(_process_rss_kib(pid) for pid in pids),
        rss_at={},
    ) | {"threads": spec["threads"], "processes": len(pids)}
    report(result)
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=10)


def _counting_outcomes(spec: dict[str, Any], meter: Meter) -> Any:
    """Outcomes that tick the meter per applied message, or (dead-letter runs) per archived dead letter."""
    import workers.deadletters.drain
    from workers.observability.metrics import Outcomes

    count_archived = spec.get("count") == "archived"

    class CountingOutcomes(Outcomes):
        """Ticks the meter when a message was applied (after its commit), with its lag from occurred_at."""

        def record(self, options: Any, outcome: str) -> None:
            super().record(options, outcome)
            if outcome != "processed" and not count_archived:
                print(f"FAILED: a message was {outcome}; see the log", flush=True)
                os._exit(4)

        def handled(self, flow: str, started: float, occurred_at: datetime) -> None:
            super().handled(flow, started, occurred_at)
            if not count_archived:
                meter.tick((datetime.now(UTC) - occurred_at).total_seconds() if spec.get("latency") else None)

    if count_archived:
        original_store_all = workers.deadletters.drain.store_all

        def counting_store_all(*args: Any, **kwargs: Any) -> list[int | None]:
            stored = original_store_all(*args, **kwargs)
            for _ in stored:
                meter.tick()
            return stored

        workers.deadletters.drain.store_all = counting_store_all
    return CountingOutcomes()


def _run(spec: dict[str, Any], meter: Meter, fleet: Any, delivery_limits: dict[str, int]) -> None:
    """Start the Dramatiq worker (and the archive drain, as `flowfleet worker` does); stop after the meter."""
    from dramatiq import Worker

    from workers.deadletters.drain import ArchiveDrain
    from workers.messaging.topology import connection_parameters

    settings = fleet.settings
    worker = Worker(fleet.broker, worker_threads=settings.worker_threads, worker_timeout=1000)
    worker.queue_prefetch = settings.prefetch
    worker.delay_prefetch = max(settings.prefetch, 1000)
    drain = (
        ArchiveDrain(connection_parameters(spec["url"]), fleet.dead_letter_queues(), fleet.engine, delivery_limits)
        if spec.get("db")
        else None
    )
    meter.ready()
    worker.start()
    if drain is not None:
        drain.start()
    if not meter.done.wait(spec["timeout"]):
        print(f"TIMEOUT after {meter.count} of {meter.target} messages", flush=True)
        os._exit(3)
    report(meter.result(threads=settings.worker_threads))
    worker.stop()
    if drain is not None:
        drain.stop()
        drain.join(timeout=5)
    fleet.broker.close()
    fleet.engine.dispose()


def _register_minimal_actor(dramatiq: Any, broker: Any, queue: str, engine: Any, meter: Meter) -> None:
    """The floor for applying an order on PostgreSQL with Dramatiq: a dedup row and one insert, nothing else."""
    from sqlalchemy.dialects.postgresql import insert

    from workers.store.tables import orders, processed_events

    def minimal(body: str = "", headers: Any = None, **_: Any) -> None:
        document = json.loads(body)
        data = document["data"]
        now = datetime.now(UTC)
        with engine.begin() as connection:
            claimed = connection.execute(
                insert(processed_events)
                .values(
                    contract=document["contract"],
                    dedup_key=data["order_id"],
                    flow="orders",
                    message_id=document["message_id"],
                    version=document["version"],
                    processed_at=now,
                )
                .on_conflict_do_nothing()
                .returning(processed_events.c.contract)
            ).first()
            if claimed is not None:
                connection.execute(
                    orders.insert().values(
                        order_id=data["order_id"],
                        channel=data["channel"],
                        customer_id=data["customer"].get("customer_id"),
                        currency=data["currency"],
                        total_minor=data["total_minor"],
                        tax_exempt=0,
                        status="reserved",
                        placed_at=now,
                    )
                )
        meter.tick()

    dramatiq.Actor(minimal, broker=broker, actor_name="orders", queue_name=queue, priority=0, options={})


# -- Celery ----------------------------------------------------------------------------------------


def celery(spec: dict[str, Any], meter: Meter) -> None:
    """Celery on the same broker: a no-op task, acked late (after it ran, like the fleet), one process."""
    from celery import Celery  # type: ignore[import-untyped]
    from kombu import Queue  # type: ignore[attr-defined]

    app = Celery("bench", broker=spec["url"])
    app.conf.update(
        task_acks_late=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=spec["prefetch"],
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(spec["queue"], queue_arguments={"x-queue-type": "quorum"})],  # type: ignore[no-untyped-call]
        task_default_queue=spec["queue"],
        worker_detect_quorum_queues=True,
    )

    @app.task(name="bench.noop")  # type: ignore[untyped-decorator]
    def noop(_body: str) -> None:
        meter.tick()

    def finish() -> None:
        meter.done.wait()
        report(meter.result(pool="solo"))
        os._exit(0)

    threading.Thread(target=finish, daemon=True).start()
    meter.ready()
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=WARNING",
            "-Q",
            spec["queue"],
        ]
    )


# -- publishers ------------------------------------------------------------------------------------


def publisher(spec: dict[str, Any], _meter: Meter) -> None:
    """Publish `messages` envelopes confirmed (workers.messaging.publisher) or unconfirmed (plain pika)."""
    from bench import services
    from workers.messaging.publisher import ConfirmedPublisher, Outgoing

    bodies = list(services.valid_bodies(spec["messages"], spec["tag"]))
    outgoing = [Outgoing("order.created", body) for body in bodies]
    started = (time.perf_counter(), time.process_time())
    if spec["confirmed"]:
        parameters = pika.URLParameters(spec["url"])
        published = ConfirmedPublisher(parameters, spec["exchange"]).publish(outgoing)
        taken = published.confirmed
    else:
        taken = services.publish_unconfirmed(spec["url"], spec["exchange"], "order.created", bodies)
    wall = time.perf_counter() - started[0]
    cpu = time.process_time() - started[1]
    report(
        {
            "messages": spec["messages"],
            "taken": taken,
            "wall_s": wall,
            "cpu_s": cpu,
            "msgs_per_s": taken / wall,
            "cpu_us_per_msg": cpu / taken * 1e6,
            "rss_kib": rss_kib(),
        }
    )


KINDS: dict[str, Callable[[dict[str, Any], Meter], None]] = {
    "pika": bare_pika,
    "fleet": fleet,
    "celery": celery,
    "publisher": publisher,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    meter = Meter(
        target=spec["messages"],
        checkpoints=tuple(spec.get("checkpoints", ())),
        dbname=spec.get("dbname"),
        warmup=spec.get("warmup", 0),
    )
    if spec["kind"] == "fleet" and spec.get("processes", 1) > 1:
        fleet_processes(spec, meter)
    else:
        KINDS[spec["kind"]](spec, meter)


if __name__ == "__main__":
    main()
