"""Medians, paired ratios and target verdicts of a bench run, as a JSON document and a markdown report."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: RSS counts as flat when the larger run's RSS is at most this much above the smaller run's.
FLAT_RSS = 1.10
RSS_TARGET = 1.3


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _paired(
    ours: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]], ratio: Callable[[Any, Any], float | None]
) -> list[float]:
    """One ratio per round, from the two runs of the same round (they ran back to back)."""
    by_round = {r["round"]: r for r in reference}
    values = []
    for run in ours:
        other = by_round.get(run["round"])
        if other is not None and (value := ratio(run, other)) is not None:
            values.append(value)
    return values


def _summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _verdict(cpu: dict[str, float] | None, wall: dict[str, float] | None, target: float) -> str:
    met = {name: s["median"] >= target for name, s in (("CPU", cpu), ("wall", wall)) if s is not None}
    if not met:
        return "n/a"
    if all(met.values()):
        return "PASS"
    if not any(met.values()):
        return "MISS"
    return " / ".join(f"{'PASS' if ok else 'MISS'} ({name})" for name, ok in met.items())


def build(
    *,
    command: str,
    args: argparse.Namespace,
    scenarios: Mapping[str, Any],
    results: Mapping[str, list[dict[str, Any]]],
    extras: Mapping[str, Any],
    comparisons: Sequence[tuple[str, str, str, float, str]],
    latency_configs: Sequence[tuple[str, str, float]],
    figure_command: Callable[[list[str]], str],
    machine: Mapping[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """Everything the run measured, with each figure's command; the markdown is rendered from this alone."""
    figures = []
    for name, runs in results.items():
        figures.append(
            {
                "scenario": name,
                "title": scenarios[name].title,
                "runs": len(runs),
                "msgs_per_s": median([r["msgs_per_s"] for r in runs]),
                "cpu_us_per_msg": median([r["cpu_us_per_msg"] for r in runs]),
                "total_cpu_us_per_msg": median([r.get("total_cpu_us_per_msg") for r in runs]),
                "rss_mib": median([r["rss_kib"] / 1024 for r in runs]),
                "command": figure_command([name]),
                "raw": runs,
            }
        )
    ratios = []
    for label, ours, reference, target, cpu_key in comparisons:
        if ours not in results or reference not in results:
            continue

        def cpu_ratio(run: Mapping[str, Any], other: Mapping[str, Any], key: str = cpu_key) -> float | None:
            mine, theirs = run.get(key) or run.get("cpu_us_per_msg"), other.get(key) or other.get("cpu_us_per_msg")
            return theirs / mine if mine and theirs else None

        def wall_ratio(run: Mapping[str, Any], other: Mapping[str, Any]) -> float | None:
            return run["msgs_per_s"] / other["msgs_per_s"] if run["msgs_per_s"] and other["msgs_per_s"] else None

        cpu = _summary(_paired(results[ours], results[reference], cpu_ratio))
        wall = _summary(_paired(results[ours], results[reference], wall_ratio))
        ratios.append(
            {
                "comparison": label,
                "ours": ours,
                "reference": reference,
                "target": target,
                "cpu_basis": "worker + PostgreSQL backends" if cpu_key == "total_cpu_us_per_msg" else "worker process",
                "cpu_ratio": cpu,
                "wall_ratio": wall,
                "verdict": _verdict(cpu, wall, target),
                "command": figure_command([ours, reference]),
            }
        )
    latency = []
    for row in extras.get("latency", []):
        p99 = row.get("latency_ms", {}).get("p99")
        target = row["target_ms"]
        verdict = "—" if target is None or p99 is None else ("PASS" if p99 <= target else "MISS")
        latency.append({**row, "verdict": verdict, "command": figure_command(["latency"])})
    rss = None
    if "rss" in extras:
        small, large = (str(s) for s in args.rss_sizes)
        bare, fleet = extras["rss"]["pika-bare"], extras["rss"]["fleet-noop"]
        vs_bare = fleet["rss_at"][small] / bare["rss_at"][small]
        growth = fleet["rss_at"][large] / fleet["rss_at"][small]
        rss = {
            "sizes": [int(small), int(large)],
            "bare_kib": [bare["rss_at"][small], bare["rss_at"][large]],
            "fleet_kib": [fleet["rss_at"][small], fleet["rss_at"][large]],
            "fleet_vs_bare": vs_bare,
            "fleet_growth": growth,
            "bare_growth": bare["rss_at"][large] / bare["rss_at"][small],
            "verdict_vs_bare": "PASS" if vs_bare <= RSS_TARGET else "MISS",
            "verdict_flat": "PASS" if growth <= FLAT_RSS else "MISS",
            "command": figure_command(["rss"]),
        }
    return {
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "machine": dict(machine),
        "settings": {
            "rounds": args.rounds,
            "messages": args.messages,
            "latency_seconds": args.latency_seconds,
            "rss_sizes": list(args.rss_sizes),
            "processes": 1,
            "prefetch": args.prefetch,
            "fleet_threads": args.threads,
        },
        "targets": ratios,
        "figures": figures,
        "latency": latency,
        "rss": rss,
        "hot_sku": extras.get("hot_sku"),
        "latency_configs": [list(c) for c in latency_configs],
        "failures": list(extras.get("failures", [])),
    }


def _f(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _ratio(summary: Mapping[str, float] | None) -> str:
    if summary is None:
        return "—"
    if summary["n"] == 1:
        return f"{summary['median']:.2f}x"
    return f"{summary['median']:.2f}x ({summary['min']:.2f}-{summary['max']:.2f})"


def markdown(document: Mapping[str, Any]) -> str:
    settings = document["settings"]
    machine = document["machine"]
    lines = [
        f"Command: `{document['command']}` — {document['date']}, {document['seconds']:.0f} s.",
        "",
        f"Machine: {machine['cpus']} cores (shared), Python {machine['python']}, RabbitMQ {machine['rabbitmq']}, "
        f"PostgreSQL {machine['postgresql']}. Every consumer is one process with prefetch {settings['prefetch']} "
        f"(fleet: {settings['fleet_threads']} worker threads; Celery: solo pool); {settings['rounds']} round(s) of "
        f"{settings['messages']:,} messages per configuration, configurations alternating within each round.",
        "",
    ]
    if document["targets"]:
        lines += [
            "| comparison | target | CPU ratio | wall ratio | verdict | command |",
            "|---|---|---|---|---|---|",
        ]
        for row in document["targets"]:
            lines.append(
                f"| {row['comparison']} | ≥ {row['target']:g}x | {_ratio(row['cpu_ratio'])} | "
                f"{_ratio(row['wall_ratio'])} | {row['verdict']} | `{row['command']}` |"
            )
        lines += [
            "",
            "Ratios are paired per round (median, min-max): throughput ours ÷ reference (wall), and CPU per "
            "message reference ÷ ours (CPU; worker process, plus its PostgreSQL backends where PostgreSQL is used).",
            "",
        ]
    if document["figures"]:
        lines += [
            "| configuration | msgs/s | worker CPU µs/msg | worker + PG CPU µs/msg | RSS MiB | runs | command |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in document["figures"]:
            lines.append(
                f"| {row['title']} (`{row['scenario']}`) | {_f(row['msgs_per_s'])} | {_f(row['cpu_us_per_msg'])} | "
                f"{_f(row['total_cpu_us_per_msg'])} | {_f(row['rss_mib'], 1)} | {row['runs']} | `{row['command']}` |"
            )
        lines.append("")
    if document["latency"]:
        lines += [
            "| end-to-end latency | offered load | p50 ms | p99 ms | max ms | n | target p99 | verdict | command |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in document["latency"]:
            lat = row.get("latency_ms", {})
            target = "—" if row["target_ms"] is None else f"≤ {row['target_ms']:g} ms"
            lines.append(
                f"| {row['config']} (`{row['scenario']}`) | {row['load']}: {row['offered_per_s']:,.0f} msg/s "
                f"(max {row['max_msgs_per_s']:,.0f}) | {_f(lat.get('p50'), 1)} | {_f(lat.get('p99'), 1)} | "
                f"{_f(lat.get('max'), 1)} | {lat.get('n', 0):,} | {target} | {row['verdict']} | `{row['command']}` |"
            )
        lines += ["", "Latency = handled (after commit) - occurred_at, stamped by the publisher at publish time.", ""]
    rss = document["rss"]
    if rss:
        small, large = rss["sizes"]
        lines += [
            f"| RSS per worker process | at {small:,} msgs | at {large:,} msgs | growth | target | verdict | command |",
            "|---|---|---|---|---|---|---|",
            f"| bare pika loop | {rss['bare_kib'][0] / 1024:.1f} MiB | {rss['bare_kib'][1] / 1024:.1f} MiB | "
            f"{rss['bare_growth']:.2f}x | — | — | `{rss['command']}` |",
            f"| flowfleet, no-op, no DB | {rss['fleet_kib'][0] / 1024:.1f} MiB | {rss['fleet_kib'][1] / 1024:.1f} MiB"
            f" | {rss['fleet_growth']:.2f}x | ≤ {RSS_TARGET}x bare ({rss['fleet_vs_bare']:.2f}x), flat "
            f"(≤ {FLAT_RSS}x) | {rss['verdict_vs_bare']} (vs bare), {rss['verdict_flat']} (flat) | "
            f"`{rss['command']}` |",
            "",
        ]
    hot = document.get("hot_sku")
    if hot:
        lines += [
            "| hot SKU (outbox) | orders | hot SKU, orders/s | spread SKUs, orders/s | hot / spread | command |",
            "|---|---|---|---|---|---|",
            f"| one SKU vs one SKU per order | {hot['hot']['orders']:,} | {_f(hot['hot']['orders_per_second'], 1)} | "
            f"{_f(hot['spread']['orders_per_second'], 1)} | {hot['hot_vs_spread']:.2f} | `{hot['command']}` |",
            "",
        ]
    for failure in document["failures"]:
        lines.append(f"- **{failure['scenario']}** failed in round {failure['round']}: see results.json and logs/")
    return "\n".join(lines).rstrip("\n") + "\n"
