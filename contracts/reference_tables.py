"""The contracts page's tables: field rows read from a JSON Schema, and the Markdown they are written in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: The instant every example on the page carries (and the constraints column quotes).
EXAMPLE_OCCURRED_AT = "2026-11-24T15:00:00Z"


def field_rows(node: Mapping[str, Any], defs: Mapping[str, Any], prefix: str = "") -> list[list[str]]:
    rows: list[list[str]] = []
    required = set(node.get("required", ()))
    for name, prop in node.get("properties", {}).items():
        schema, nullable = _unwrap(prop, defs)
        kind = _type_of(schema, defs) + (" or null" if nullable else "")
        rows.append(
            [
                f"`{prefix}{name}`",
                cell(kind),
                cell(_required(name in required, prop)),
                cell(_constraints(schema, defs)),
            ]
        )
        if _is_record(schema):
            rows += field_rows(schema, defs, f"{prefix}{name}.")
        elif schema.get("type") == "array":
            items = _resolve(schema.get("items", {}), defs)
            if _is_record(items):
                rows += field_rows(items, defs, f"{prefix}{name}[].")
    return rows


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Mapping[str, Any] = defs[ref.removeprefix("#/$defs/")]
        return resolved
    return node


def _unwrap(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """The schema a field's value follows, and whether `null` is also accepted."""
    options = prop.get("anyOf")
    if not isinstance(options, list):
        return _resolve(prop, defs), False
    values = [option for option in options if option != {"type": "null"}]
    nullable = len(values) < len(options)
    if len(values) == 1:
        return _resolve(values[0], defs), nullable
    return {"anyOf": values}, nullable


def _is_record(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "object" and "properties" in schema


def _type_of(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type_of(_resolve(option, defs), defs) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "string" and schema.get("format") == "date-time":
        return "string (date-time)"
    if kind == "array":
        items = _resolve(schema.get("items", {}), defs)
        return "array of objects" if _is_record(items) else f"array of {_type_of(items, defs)}"
    if kind == "object" and not _is_record(schema):
        values = schema.get("additionalProperties")
        if isinstance(values, Mapping):
            return f"object (string keys, {_type_of(_resolve(values, defs), defs)} values)"
    return str(kind) if isinstance(kind, str) else "any JSON value"


def _required(required: bool, prop: Mapping[str, Any]) -> str:
    if required:
        return "yes"
    default = prop.get("default")
    if default is None:
        return "no"
    return f"no (default `{json.dumps(default, ensure_ascii=False)}`)"


def _constraints(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if "const" in schema:
        parts.append(f"always `{json.dumps(schema['const'])}`")
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{value}`" for value in schema["enum"]))
    parts += _range(schema.get("minLength"), schema.get("maxLength"), "characters")
    excluded = schema.get("not")
    if isinstance(excluded, Mapping) and "const" in excluded:
        parts.append(f"not `{json.dumps(excluded['const'])}`")
    if "pattern" in schema:
        parts.append(f"matches `{schema['pattern']}`")
    if schema.get("format") == "date-time":
        parts.append(f"ISO 8601 / RFC 3339 with a UTC offset, e.g. `{EXAMPLE_OCCURRED_AT}`")
    if schema.get("type") == "integer":
        low = schema.get("minimum", _step(schema.get("exclusiveMinimum"), 1))
        high = schema.get("maximum", _step(schema.get("exclusiveMaximum"), -1))
        parts += _range(low, high, "")
    parts += _range(schema.get("minItems"), schema.get("maxItems"), "items")
    parts += _range(schema.get("minProperties"), schema.get("maxProperties"), "entries")
    names = schema.get("propertyNames")
    if isinstance(names, Mapping) and (names_rule := _constraints(names, defs)):
        parts.append(f"keys: {names_rule}")
    values = schema.get("additionalProperties")
    if isinstance(values, Mapping) and (values_rule := _constraints(_resolve(values, defs), defs)):
        parts.append(f"values: {values_rule}")
    return "; ".join(parts)


def _step(bound: Any, by: int) -> Any:
    return bound + by if isinstance(bound, int) else None


def _range(low: Any, high: Any, unit: str) -> list[str]:
    suffix = f" {unit}" if unit else ""
    if low is not None and high is not None:
        return [f"{low:,} to {high:,}{suffix}"]
    if high is not None:
        return [f"at most {high:,}{suffix}"]
    if low is not None:
        return [f"at least {low:,}{suffix}"]
    return []


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cell(text: str) -> str:
    """Table cells may not hold a bare `|`, not even inside a code span (GitHub's rule)."""
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    return f"`{cell(text)}`"


def json_block(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=2, ensure_ascii=False) + "\n```"
