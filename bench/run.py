"""`python -m bench`: each configuration alternately, several rounds, medians and paired ratios against the targets."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import pika

from bench import profile, report, services

ROOT = Path(__file__).resolve().parent.parent
#: py-spy (the `bench` extra) beside this interpreter, for --profile.
PY_SPY = str(Path(sys.executable).with_name("py-spy"))


@dataclass(frozen=True)
class Scenario:
    """One configuration measured side by side with the others."""

    name: str
    title: str
    kind: str  # the bench.consumer kind
    handler: str | None = None
    db: bool = False
    dedup: bool = True
    #: True: FLOWFLEET_GROUP_COMMIT on (workers.runtime.group_commit); the product's default is off.
    group_commit: bool = False
    #: Groups in flight per process with group commit on; None: the product's default (FLOWFLEET_GROUP_COMMIT_LANES).
    group_commit_lanes: int | None = None
    invalid: bool = False  # publish bodies that fail the contract
    flow: str = "orders"  # the flow whose queue it consumes
    contract: str = "order.created"  # the routing key of what it is fed
    #: Messages per run when --messages is not given (the catalog's nightly repricing is 100,000).
    default_messages: int | None = None
    #: Lines (distinct SKUs) per order of a valid `order.created`.
    lines: int = 1

    @property
    def prefix(self) -> str:
        return f"bench.{self.name}."

    @property
    def exchange(self) -> str:
        return f"bench.{self.name}.events"

    @property
    def queue(self) -> str:
        return f"{self.prefix}celery" if self.kind == "celery" else f"{self.prefix}{self.flow}"

    @property
    def queues(self) -> list[str]:
        if self.kind == "celery":
            return [self.queue]
        return [self.queue, self.queue + ".DQ", self.queue + ".XQ"]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("pika-bare", "bare pika consume+ack loop", "pika"),
        Scenario("fleet-noop", "flowfleet full pipeline, no-op handler, no DB", "fleet", handler="noop"),
        Scenario("celery-noop", "Celery, no-op task (solo pool, acks late)", "celery"),
        Scenario("fleet-pg-dedup", "flowfleet, one-insert handler, PostgreSQL, dedup on", "fleet", "insert", db=True),
        Scenario(
            "fleet-pg-nodedup",
            "flowfleet, one-insert handler, PostgreSQL, dedup off",
            "fleet",
            "insert",
            db=True,
            dedup=False,
        ),
        Scenario(
            "fleet-pg-dedup-group-commit",
            "flowfleet, one-insert handler, PostgreSQL, dedup on, FLOWFLEET_GROUP_COMMIT on",
            "fleet",
            "insert",
            db=True,
            group_commit=True,
        ),
        Scenario(
            "fleet-pg-dedup-group-commit-2lanes",
            "flowfleet, one-insert handler, PostgreSQL, dedup on, group commit with two groups in flight",
            "fleet",
            "insert",
            db=True,
            group_commit=True,
            group_commit_lanes=2,
        ),
        Scenario("fleet-orders", "flowfleet orders flow, PostgreSQL (in-process ERP)", "fleet", "orders", db=True),
        Scenario(
            "fleet-orders-5lines",
            "flowfleet orders flow, five lines per order, PostgreSQL (in-process ERP)",
            "fleet",
            "orders",
            db=True,
            lines=5,
        ),
        Scenario(
            "fleet-orders-group-commit",
            "flowfleet orders flow, PostgreSQL, FLOWFLEET_GROUP_COMMIT on",
            "fleet",
            "orders",
            db=True,
            group_commit=True,
        ),
        Scenario(
            "fleet-orders-group-commit-2lanes",
            "flowfleet orders flow, PostgreSQL, group commit with two groups in flight",
            "fleet",
            "orders",
            db=True,
            group_commit=True,
            group_commit_lanes=2,
        ),
        Scenario(
            "dramatiq-minimal",
            "minimal Dramatiq actor: dedup row + one insert, PostgreSQL",
            "fleet",
            "minimal",
            db=True,
        ),
        Scenario(
            "fleet-deadletter",
            "flowfleet, contract-invalid bodies, until archived in PostgreSQL",
            "fleet",
            "insert",
            db=True,
            invalid=True,
        ),
        Scenario(
            "catalog-bulk",
            "flowfleet catalog flow, nightly repricing: price.changed, one per SKU, PostgreSQL",
            "fleet",
            "catalog",
            db=True,
            flow="catalog",
            contract="price.changed",
            default_messages=100_000,
        ),
        Scenario("publish-confirmed", "confirmed publish (workers.messaging.publisher, window 256)", "publisher"),
        Scenario("publish-unconfirmed", "unconfirmed publish (plain pika)", "publisher"),
    )
}

#: (label, scenario measured, reference, target ratio, CPU figure to compare)
COMPARISONS: tuple[tuple[str, str, str, float, str], ...] = (
    ("full pipeline without DB vs bare pika", "fleet-noop", "pika-bare", 0.65, "cpu_us_per_msg"),
    ("full pipeline without DB vs Celery", "fleet-noop", "celery-noop", 3.0, "cpu_us_per_msg"),
    ("dedup on vs off (PostgreSQL): cost <= 10%", "fleet-pg-dedup", "fleet-pg-nodedup", 0.90, "total_cpu_us_per_msg"),
    ("orders flow vs minimal dedup+insert actor", "fleet-orders", "dramatiq-minimal", 1.0, "total_cpu_us_per_msg"),
    ("confirmed vs unconfirmed publish", "publish-confirmed", "publish-unconfirmed", 0.50, "cpu_us_per_msg"),
    ("dead-lettering vs success path (PostgreSQL)", "fleet-deadletter", "fleet-pg-dedup", 0.50, "total_cpu_us_per_msg"),
    (
        "group commit vs one transaction per message (one insert)",
        "fleet-pg-dedup-group-commit",
        "fleet-pg-dedup",
        1.0,
        "total_cpu_us_per_msg",
    ),
    (
        "group commit vs one transaction per message (orders)",
        "fleet-orders-group-commit",
        "fleet-orders",
        1.0,
        "total_cpu_us_per_msg",
    ),
)

#: p99 targets at 1k msg/s: (latency config, scenario it runs, target in ms)
LATENCY_CONFIGS: tuple[tuple[str, str, float], ...] = (
    ("without DB", "fleet-noop", 10.0),
    ("with PostgreSQL", "fleet-pg-dedup", 50.0),
)
EXTRAS = ("latency", "rss", "hot-sku")


# -- one measured process ----------------------------------------------------------------------------


class Harness:
    """A bench.consumer subprocess; its stdout lines arrive on a queue, its stderr goes to a log file."""

    def __init__(self, spec: dict[str, Any], log_dir: Path, label: str, *, profile: bool = False) -> None:
        self.log_path = log_dir / f"{label}.log"
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.profiled = profile
        command = [sys.executable, "-m", "bench.consumer", json.dumps(spec)]
        if profile:
            # Samples of the thread holding the GIL only (Python's CPU), forked workers included.
            stacks = str(log_dir / f"{label}.stacks")
            command = [
                PY_SPY,
                "record",
                "--format",
                "raw",
                "--rate",
                "200",
                "--gil",
                "--subprocesses",
                "-o",
                stacks,
                "--",
                *command,
            ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if not k.startswith("FLOWFLEET_")},
                start_new_session=True,  # its own process group: forked workers are stopped with it
            )
        RUNNING.add(self.process)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or (not line and time.monotonic() > deadline):
                log = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"bench.consumer gave no {prefix} ({self.process.poll()=}):\n{log}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def stop(self) -> None:
        if self.profiled:
            # py-spy writes its stacks when the consumer ends on its own (it does after RESULT).
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
        stop_group(self.process)
        RUNNING.discard(self.process)


def stop_group(process: subprocess.Popen[str], grace: float = 10.0) -> None:
    """SIGTERM the process's whole group (a --processes run forks workers), SIGKILL what outlives `grace`.

    Nothing of one run may go on consuming while the next run's backlog is published."""
    deadline = time.monotonic() + grace
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.1)
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return  # the group is gone
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


RUNNING: set[subprocess.Popen[str]] = set()


# -- the run -------------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    vhost: services.Vhost
    databases: dict[str, services.Database]
    log_dir: Path
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def spec(self, scenario: Scenario, messages: int, **extra: Any) -> dict[str, Any]:
        database = self.databases.get(scenario.name)
        return {
            "kind": scenario.kind,
            "url": self.vhost.url,
            "queue": scenario.queue,
            "prefix": scenario.prefix,
            "exchange": scenario.exchange,
            "handler": scenario.handler,
            "dedup": scenario.dedup,
            "group_commit": scenario.group_commit,
            "group_commit_lanes": scenario.group_commit_lanes,
            "db": database.url if database else None,
            "dbname": database.name if database else None,
            "count": "archived" if scenario.invalid else "applied",
            "messages": messages,
            "threads": self.args.threads,
            "processes": self.args.processes,
            "prefetch": self.args.prefetch,
            "timeout": self.args.timeout,
            "confirmed": scenario.name == "publish-confirmed",
            "tag": f"{scenario.name}-{time.monotonic_ns()}",
            **extra,
        }

    def declare(self, scenario: Scenario) -> None:
        from workers.messaging.topology import Topology, apply

        connection = self.vhost.connection()
        try:
            channel = connection.channel()
            if scenario.kind == "celery":
                channel.queue_declare(scenario.queue, durable=True, arguments={"x-queue-type": "quorum"})
            else:
                apply(channel, Topology(scenario.exchange, {scenario.queue: (scenario.contract,)}, delivery_limit=5))
        finally:
            connection.close()

    def reset(self, scenario: Scenario) -> None:
        self.vhost.purge(scenario.queues)
        database = self.databases.get(scenario.name)
        if database:
            services.reset_schema(database)

    def publish(self, scenario: Scenario, count: int, tag: str) -> None:
        make = services.invalid_bodies if scenario.invalid else services.valid_bodies
        if scenario.contract == "price.changed":
            make = services.price_bodies
        bodies = services.valid_bodies(count, tag, scenario.lines) if scenario.lines > 1 else make(count, tag)
        if scenario.kind == "celery":
            services.publish_celery(self.vhost.url, scenario.queue, bodies)
        else:
            services.publish_confirmed(self.vhost.url, scenario.exchange, scenario.contract, bodies)

    def backlog(self, scenario: Scenario, count: int, tag: str) -> None:
        """Exactly `count` ready messages in the scenario's queue (Celery's are published unconfirmed: top up)."""
        self.publish(scenario, count, tag)
        for attempt in range(3):
            depth = self.vhost.wait_for_depth(scenario.queue, count)
            if depth == count:
                return
            if depth > count:
                break
            progress(f"{scenario.queue} holds {depth} of {count}; publishing the {count - depth} missing")
            self.publish(scenario, count - depth, f"{tag}-top-up-{attempt}")
        raise RuntimeError(f"{scenario.queue} holds {self.vhost.depth(scenario.queue)} messages, not {count}")

    def throughput(self, scenario: Scenario, round_: int) -> dict[str, Any]:
        """Drain a backlog of `messages` (publishers: publish them) in one fresh process."""
        self.reset(scenario)
        messages = self.messages(scenario)
        spec = self.spec(scenario, messages)
        if scenario.kind != "publisher":
            self.backlog(scenario, messages, spec["tag"])
        harness = Harness(spec, self.log_dir, f"{scenario.name}-round{round_}", profile=self.args.profile)
        database = self.databases.get(scenario.name)
        analyzing = services.Analyzer(database) if database else None
        try:
            result: dict[str, Any] = json.loads(harness.expect("RESULT", self.args.timeout + 60))
        finally:
            harness.stop()
            if analyzing is not None:
                analyzing.stop()
        return result

    def messages(self, scenario: Scenario) -> int:
        """--messages when given (a quick run uses fewer), else the scenario's own size, else the default."""
        if self.args.messages_given or scenario.default_messages is None:
            return int(self.args.messages)
        return scenario.default_messages

    def hot_sku(self) -> dict[str, Any]:
        """`python -m bench.hot_sku` (its own databases), its JSON kept; --messages caps its orders at 400."""
        orders = min(400, int(self.args.messages))
        command = [sys.executable, "-m", "bench.hot_sku", "--orders", str(orders), "--threads", str(self.args.threads)]
        with (self.log_dir / "hot-sku.log").open("wb") as log:
            done = subprocess.run(
                command, check=False, stdout=subprocess.PIPE, stderr=log, cwd=ROOT, timeout=self.args.timeout
            )
        if done.returncode != 0:
            raise RuntimeError(f"bench.hot_sku exited with {done.returncode}; see logs/hot-sku.log")
        result: dict[str, Any] = json.loads(done.stdout)
        result["command"] = shlex.join(["python", "-m", "bench.hot_sku", *command[3:]])
        return result

    def latency(self, scenario: Scenario, rate: float) -> dict[str, Any]:
        """Offer `rate` msg/s for the configured seconds to a running worker; lag = handled - occurred_at."""
        self.reset(scenario)
        count = max(1, int(rate * self.args.latency_seconds))
        warmup = min(count // 10, 200)
        spec = self.spec(scenario, count, latency=True, warmup=warmup)
        harness = Harness(spec, self.log_dir, f"latency-{scenario.name}-{int(rate)}")
        try:
            harness.expect("READY", 60)
            self._wait_for_consumer(scenario.queue)
            offered = paced_publish(self.vhost.url, scenario.exchange, rate, count, spec["tag"])
            result: dict[str, Any] = json.loads(harness.expect("RESULT", self.args.timeout + 60))
        finally:
            harness.stop()
        result["offered_per_s"] = offered
        result["rate"] = rate
        return result

    def rss(self, scenario: Scenario) -> dict[str, Any]:
        """RSS of one consumer process after the first and the second size of messages."""
        self.reset(scenario)
        small, large = self.args.rss_sizes
        spec = self.spec(scenario, large, checkpoints=[small, large])
        harness = Harness(spec, self.log_dir, f"rss-{scenario.name}")
        try:
            harness.expect("READY", 60)
            self._wait_for_consumer(scenario.queue)
            batch = 10_000
            for start in range(0, large, batch):
                self.publish(scenario, min(batch, large - start), f"{spec['tag']}-{start}")
            result: dict[str, Any] = json.loads(harness.expect("RESULT", self.args.timeout + 60))
        finally:
            harness.stop()
        return result

    def _wait_for_consumer(self, queue_name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connection = self.vhost.connection()
            try:
                if connection.channel().queue_declare(queue_name, passive=True).method.consumer_count:
                    return
            finally:
                connection.close()
            time.sleep(0.05)
        raise RuntimeError(f"no consumer on {queue_name} after {timeout} s")


def paced_publish(url: str, exchange: str, rate: float, count: int, tag: str) -> float:
    """Publish `count` envelopes at `rate` per second, each stamped with occurred_at = its publish time."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        start = time.perf_counter()
        for n in range(count):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            data = services.order_data(f"ORD-{tag}-{n}", f"SKU-{n % services.SKUS}")
            body = services.envelope(data, occurred_at=datetime.now(UTC))
            channel.basic_publish(exchange, "order.created", body, services.PROPERTIES)
        elapsed = time.perf_counter() - start
    finally:
        connection.close()
    return count / elapsed if elapsed > 0 else float(count)


# -- command line ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 round of 1,000 messages, 2 s latency, small RSS")
    parser.add_argument("--rounds", type=int, help="rounds of every scenario, alternating (default 3)")
    parser.add_argument("--messages", type=int, help="messages per throughput run (default 5000)")
    parser.add_argument("--latency-seconds", type=float, help="seconds of offered load per latency run (default 5)")
    parser.add_argument("--rss-sizes", help="two message counts for RSS, e.g. 20000,200000 (default 5000,50000)")
    parser.add_argument("--big", action="store_true", help="RSS at 20,000 and 200,000 messages (the issue's sizes)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads of the fleet processes (default 8)")
    parser.add_argument(
        "--processes", type=int, default=1, help="fleet worker processes per fleet run, each of --threads (default 1)"
    )
    parser.add_argument("--prefetch", type=int, default=100, help="prefetch of every consumer (default 100)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one measured process may take")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record each throughput run with py-spy (logs/<run>.stacks) and add where its CPU went to results.md; "
        "sampling costs CPU, so take figures from a run without it",
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated subset of: {', '.join([*SCENARIOS, *EXTRAS])}",
    )
    parser.add_argument(
        "--out", type=Path, help="folder for results.md and results.json (default bench/results/<time>)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.messages_given = args.messages is not None or quick
    args.rounds = args.rounds or (1 if quick else 3)
    args.messages = args.messages or (1000 if quick else 5000)
    args.latency_seconds = args.latency_seconds or (2.0 if quick else 5.0)
    sizes = args.rss_sizes or ("20000,200000" if args.big else "2000,10000" if quick else "5000,50000")
    args.rss_sizes = tuple(int(s) for s in sizes.split(","))
    if len(args.rss_sizes) != 2 or args.rss_sizes[0] >= args.rss_sizes[1]:
        parser.error("--rss-sizes takes two increasing counts, e.g. 20000,200000")
    chosen = [s.strip() for s in (args.only or ",".join([*SCENARIOS, *EXTRAS])).split(",") if s.strip()]
    unknown = set(chosen) - {*SCENARIOS, *EXTRAS}
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    args.chosen = chosen
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out = args.out or ROOT / "bench" / "results" / stamp
    return args


def figure_command(args: argparse.Namespace, only: list[str]) -> str:
    """The command that reproduces a figure: the same sizes, only the scenarios it needs."""
    parts = ["python", "-m", "bench", "--only", ",".join(dict.fromkeys(only))]
    parts += ["--rounds", str(args.rounds)]
    if args.messages_given:  # else each scenario's own size (the catalog's 100,000) or the default
        parts += ["--messages", str(args.messages)]
    if "latency" in only:
        parts += ["--latency-seconds", f"{args.latency_seconds:g}"]
    if "rss" in only:
        parts += ["--rss-sizes", ",".join(str(s) for s in args.rss_sizes)]
    if args.threads != 8 or args.prefetch != 100:
        parts += ["--threads", str(args.threads), "--prefetch", str(args.prefetch)]
    if args.processes != 1:
        parts += ["--processes", str(args.processes)]
    return shlex.join(parts)


def needed_scenarios(chosen: list[str]) -> list[Scenario]:
    names = [c for c in chosen if c in SCENARIOS]
    if "latency" in chosen:
        names += [name for _label, name, _target in LATENCY_CONFIGS]
    if "rss" in chosen:
        names += ["pika-bare", "fleet-noop"]
    return [SCENARIOS[n] for n in dict.fromkeys(names)]


@contextmanager
def environment(scenarios: list[Scenario]) -> Iterator[tuple[services.Vhost, dict[str, services.Database]]]:
    """A vhost for the run and a database per PostgreSQL scenario; all removed at the end, whatever happens."""
    vhost = services.Vhost()
    databases: dict[str, services.Database] = {}
    try:
        for scenario in scenarios:
            if scenario.db:
                databases[scenario.name] = services.Database(scenario.name)
                services.prepare_schema(databases[scenario.name])
        yield vhost, databases
    finally:
        for process in list(RUNNING):
            stop_group(process, grace=0.0)
        for database in databases.values():
            database.drop()
        vhost.delete()


def progress(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    scenarios = needed_scenarios(args.chosen)
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = args.out / "logs"
    log_dir.mkdir(exist_ok=True)
    started = time.monotonic()
    host = machine()
    with environment(scenarios) as (vhost, databases):
        bench = Bench(args, vhost, databases, log_dir)
        for scenario in scenarios:
            bench.declare(scenario)
        measured = [s for s in scenarios if s.name in args.chosen]
        for round_ in range(1, args.rounds + 1):
            # Alternate: each round starts one scenario later, so no configuration always runs first.
            shift = (round_ - 1) % max(1, len(measured))
            for scenario in measured[shift:] + measured[:shift]:
                progress(f"round {round_}/{args.rounds}: {scenario.name}")
                try:
                    result = bench.throughput(scenario, round_)
                except RuntimeError as error:
                    progress(f"{scenario.name} failed: {error}")
                    bench.failures.append({"scenario": scenario.name, "round": round_, "error": str(error)[-2000:]})
                    continue
                result["round"] = round_
                bench.results.setdefault(scenario.name, []).append(result)
        if "latency" in args.chosen:
            bench.extras["latency"] = run_latency(bench)
        if "rss" in args.chosen:
            progress(f"RSS at {args.rss_sizes[0]} and {args.rss_sizes[1]} messages")
            bench.extras["rss"] = {name: bench.rss(SCENARIOS[name]) for name in ("pika-bare", "fleet-noop")}
        if "hot-sku" in args.chosen:
            progress("hot SKU: bench.hot_sku")
            bench.extras["hot_sku"] = bench.hot_sku()
    document = report.build(
        command=command,
        args=args,
        scenarios=SCENARIOS,
        results=bench.results,
        extras={**bench.extras, "failures": bench.failures},
        comparisons=COMPARISONS,
        latency_configs=LATENCY_CONFIGS,
        figure_command=lambda only: figure_command(args, only),
        machine=host,
        seconds=time.monotonic() - started,
    )
    (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    markdown = report.markdown(document)
    if args.profile:
        markdown += "\n## Where the CPU went (py-spy, `--profile`)\n\n" + "\n".join(
            profile.markdown(stacks.stem, profile.summarize(stacks.read_text(errors="replace")))
            for stacks in sorted(log_dir.glob("*.stacks"))
        )
    (args.out / "results.md").write_text(markdown)
    print(markdown)
    progress(f"wrote {args.out / 'results.md'} and results.json")
    return 0


def run_latency(bench: Bench) -> list[dict[str, Any]]:
    """At 1k msg/s and at half the measured maximum (a throughput run of its own if none was made)."""
    rows = []
    for label, name, target in LATENCY_CONFIGS:
        scenario = SCENARIOS[name]
        runs = bench.results.get(name) or []
        if not runs:
            progress(f"latency: measuring the maximum of {name} first")
            runs = [bench.throughput(scenario, 0)]
        maximum = report.median([r["msgs_per_s"] for r in runs]) or 1000.0
        for rate, kind in ((1000.0, "1k msg/s"), (maximum / 2, "half of max")):
            progress(f"latency {label}: {rate:.0f} msg/s for {bench.args.latency_seconds:g} s")
            result = bench.latency(scenario, rate)
            rows.append(
                {
                    "config": label,
                    "scenario": name,
                    "load": kind,
                    "max_msgs_per_s": maximum,
                    "target_ms": target if kind == "1k msg/s" else None,
                    **result,
                }
            )
    return rows


def machine() -> dict[str, Any]:
    def version(command: list[str]) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except OSError:
            return "unknown"

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "rabbitmq": version(["rabbitmqctl", "-q", "version"]),
        "postgresql": version(
            ["psql", "-h", services.PG_HOST, "-U", services.PG_USER, "-d", "test", "-Atc", "SHOW server_version"]
        ),
        "loadavg_at_start": os.getloadavg(),
    }


Comparison = tuple[str, str, str, float, str]
FigureCommand = Callable[[list[str]], str]
