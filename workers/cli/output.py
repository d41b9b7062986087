"""The one JSON printer of the command line: datetimes as ISO 8601, bytes as text, anything else as its str."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, TextIO


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def dump_json(value: Any) -> str:
    """Indented JSON for a human or a script to read."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, indent=2)


def json_line(value: Any) -> str:
    """One-line JSON, for JSON Lines output."""
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def print_json(value: Any, stream: TextIO | None = None) -> None:
    print(dump_json(value), file=stream or sys.stdout)
