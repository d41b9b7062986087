"""The archive as every `dlq` command opens it (schema checked) and shows its records (masked unless --unmask)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from workers.cli.command import CommandError
from workers.observability.masking import mask, mask_text
from workers.settings import Settings, redact_url
from workers.store.db import make_engine
from workers.store.schema import SchemaNotCurrent, require_current_schema


@contextmanager
def archive_engine(settings: Settings) -> Iterator[Engine]:
    """An engine on the archive, whose schema must be the one this code knows (`db upgrade` migrates it)."""
    url = settings.database_url.get_secret_value()
    engine = make_engine(url)
    try:
        try:
            require_current_schema(engine)
        except SchemaNotCurrent as error:
            raise CommandError(str(error)) from None
        except OperationalError as error:
            raise CommandError(f"cannot reach the archive at {redact_url(url)}: {type(error.orig).__name__}") from None
        yield engine
    finally:
        engine.dispose()


def masked(value: Any, unmask: bool) -> Any:
    return value if unmask else mask(value)


def shown(value: Any) -> str:
    return mask_text(str(value))
