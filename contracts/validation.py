"""Turns pydantic validation errors into a reason an upstream team can act on: field paths first."""

from __future__ import annotations

from pydantic import ValidationError

MAX_LISTED_ERRORS = 5
MAX_INPUT_CHARS = 60


def describe_errors(error: ValidationError, *, prefix: str = "") -> tuple[str, tuple[str, ...]]:
    """Return `(reason, field_paths)`; paths look like `data.lines.0.quantity`."""
    parts: list[str] = []
    paths: list[str] = []
    for detail in error.errors(include_url=False):
        path = ".".join(str(step) for step in (prefix, *detail["loc"]) if step != "")
        paths.append(path or "(root)")
        if len(parts) < MAX_LISTED_ERRORS:
            parts.append(f"{path or '(root)'}: {detail['msg']}")
    extra = len(paths) - len(parts)
    reason = "; ".join(parts) + (f"; and {extra} more" if extra > 0 else "")
    return reason, tuple(dict.fromkeys(paths))
