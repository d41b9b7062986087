"""The one JSON printer of the command line: datetimes as ISO 8601, bytes as text, anything else as its str."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from workers.deadletters.export import jsonable


def dump_json(value: Any) -> str:
    """Indented JSON for a human or a script to read."""
    return json.dumps(value, default=jsonable, ensure_ascii=False, indent=2)


def print_json(value: Any, stream: TextIO | None = None) -> None:
    print(dump_json(value), file=stream or sys.stdout)
