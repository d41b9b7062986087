"""Fitting untrusted values into SQL columns, so a dead letter's record can always be stored.

A dead letter carries whatever a publisher sent: NUL characters (PostgreSQL text refuses them),
lone surrogates (not encodable as UTF-8), strings longer than a column, integers beyond a column's
range, NaN in JSON. The archive keeps the raw body as bytes untouched; only the columns it derives
for searching and display are fitted, and a fitted value says so (`…`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Table

_RANGES: dict[type[Any], tuple[int, int]] = {Integer: (-(2**31), 2**31 - 1), BigInteger: (-(2**63), 2**63 - 1)}


def fit_text(value: str, limit: int | None = None) -> str:
    """No NUL, only encodable characters (lone surrogates become `\\udxxx`), at most `limit` characters."""
    text = value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text


def fit_json(value: Any) -> Any:
    """A JSON value every database accepts: texts fitted, non-finite floats as text, other objects as text."""
    if isinstance(value, Mapping):
        return {fit_text(str(key)): fit_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [fit_json(item) for item in value]
    plain = value is None or isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))
    if plain:
        return value
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return fit_text(text)


def fit_row(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` fitted to `table`'s columns; an integer out of range becomes NULL, or the nearest bound."""
    fitted: dict[str, Any] = {}
    for name, value in values.items():
        column = table.c.get(name)
        if column is None or value is None:
            fitted[name] = value
        elif isinstance(column.type, String) and isinstance(value, str):
            fitted[name] = fit_text(value, column.type.length)
        elif isinstance(column.type, JSON):
            fitted[name] = fit_json(value)
        elif isinstance(value, int) and not isinstance(value, bool) and type(column.type) in _RANGES:
            low, high = _RANGES[type(column.type)]
            fitted[name] = value if low <= value <= high else (None if column.nullable else max(low, min(high, value)))
        else:
            fitted[name] = value
    return fitted
