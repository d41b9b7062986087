"""The `flowfleet` command line: demo, worker, exporter, topology, publish, contracts, dlq, downstream, reconcile,
report, console, db."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import pika.exceptions
from pydantic import ValidationError

from workers.cli import (
    console,
    contracts,
    db,
    demo,
    dlq,
    downstream,
    exporter,
    publish,
    reconcile,
    report,
    topology,
    worker,
)
from workers.cli.command import CommandError
from workers.messaging import topology as topo
from workers.settings import ConfigurationError, Settings, redact_url

#: The command groups, in the order `flowfleet --help` lists them: each module's `register` adds its parsers.
GROUPS = (demo, worker, topology, publish, contracts, dlq, downstream, reconcile, report, console, exporter, db)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="flowfleet", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return top


def run(args: argparse.Namespace) -> int:
    """Build this invocation's settings once, run the command's handler, and say in plain words what failed."""
    try:
        settings = Settings()
        return int(args.handler(args, settings))
    except ConfigurationError as error:
        raise CommandError(str(error)) from None
    except ValidationError as error:
        raise CommandError(f"invalid configuration: {error}") from None
    except pika.exceptions.ChannelClosedByBroker as error:
        raise CommandError(topo.explain(error, "the broker topology") + "; see `flowfleet topology check`") from None
    except pika.exceptions.AMQPConnectionError as error:
        url = redact_url(settings.broker_url.get_secret_value())
        raise CommandError(f"cannot reach the broker at {url}: {type(error).__name__}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = run(args)
        sys.stdout.flush()  # here, not at exit: a reader gone early (`| head`) is then one of ours to report
        return code
    except CommandError as error:
        print(f"flowfleet: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _stop_writing_to_stdout()
        print("flowfleet: the output was closed before the command finished writing it", file=sys.stderr)
        return 1


def _stop_writing_to_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush has nowhere broken to write."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
