"""`flowfleet console`: serve the on-call web console (127.0.0.1 unless configured), or hash a console password."""

from __future__ import annotations

import argparse
import getpass
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from workers.cli.command import CommandError, Subparsers, runs
from workers.settings import Settings

if TYPE_CHECKING:
    from workers.console.config import ConsoleConfig


def register(sub: Subparsers) -> None:
    console = runs(sub.add_parser("console", help="serve the on-call web console"), run)
    console.add_argument("--host", help="address to listen on (default FLOWFLEET_CONSOLE_HOST, else 127.0.0.1)")
    console.add_argument("--port", type=int, help="port (default FLOWFLEET_CONSOLE_PORT, else 8700)")
    console.add_argument(
        "--demo", action="store_true", help="run the embedded demo into a fresh SQLite archive first and serve that"
    )
    console.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password (prompt, or stdin) and print its hash for FLOWFLEET_CONSOLE_USERS; serve nothing",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from workers.console.config import ConsoleConfig, check_binding  # noqa: PLC0415  # keeps start-up light
    from workers.console.passwords import hash_password  # noqa: PLC0415

    if args.hash_password:
        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("an empty password cannot be hashed")
        print(hash_password(password))
        return 0
    config = ConsoleConfig()
    config = config.model_copy(update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
    check_binding(config)
    with tempfile.TemporaryDirectory(prefix="flowfleet-console-demo-") as workdir:
        if args.demo:
            settings = _demo_archive(settings, Path(workdir) / "demo.db")
        return _serve(settings, config)


def _demo_archive(settings: Settings, database: Path) -> Settings:
    from workers.demo import embedded  # noqa: PLC0415  # only --demo needs the demo

    print(f"running the embedded demo into {database} ...", file=sys.stderr)
    embedded.run(print_line=lambda _line: None, database=database)
    return settings.model_copy(update={"database_url": SecretStr(f"sqlite:///{database}")})


def _serve(settings: Settings, config: ConsoleConfig) -> int:
    import uvicorn  # noqa: PLC0415

    from workers.console.app import create_app  # noqa: PLC0415
    from workers.store.schema import SchemaNotCurrent  # noqa: PLC0415

    try:
        app = create_app(settings, config)
    except SchemaNotCurrent as error:
        raise CommandError(str(error)) from None
    trusted = config.trusted_proxies.replace(",", " ").split()
    print(f"flowfleet console on http://{config.host}:{config.port}/", file=sys.stderr)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        server_header=False,
        log_level="info",
    )
    return 0
