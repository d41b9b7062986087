"""The contracts page (docs/contracts.md), generated from the registry so that it cannot drift from the code."""

from __future__ import annotations

import inspect
import json
import re
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from contracts.envelope import MAX_BODY_BYTES, Envelope
from contracts.published import REGISTRY
from contracts.registry import Contract, ContractRegistry
from contracts.schema import contract_schema

REGENERATE = ".venv/bin/python -m contracts.reference > docs/contracts.md"
EXCHANGE = "commerce.events"
#: One instant for every example envelope, so the page is reproducible.
EXAMPLE_OCCURRED_AT = "2026-11-24T15:00:00Z"
EXAMPLE_PRODUCER = "your-system"

_ENVELOPE_MEANING = {
    "message_id": (
        "Unique id of this one message (a UUID is a good choice). It names the message in logs and in the "
        "dead-letter archive. It does **not** decide what is a duplicate: the dedup key does."
    ),
    "contract": "The contract name, e.g. `order.created`. The routing key must be the same string.",
    "version": 'The contract version `data` follows: a JSON integer (`2`, not `"2"`).',
    "occurred_at": (
        "When the event happened in your system (not when you published it), with a UTC offset. "
        "Used for the expiry check and lag metrics, never to order events."
    ),
    "producer": "Your system's name (e.g. `storefront`); on-call uses it to find you when a message is rejected.",
    "correlation_id": "Optional: your request or trace id; it is carried into the workers' logs.",
    "data": "The contract's payload: exactly the fields of the contract version's table below.",
}

_DEDUP_IN_SUMMARY = re.compile(r"Dedup key: (?P<key>[^;]+?)(?:;|\.\s|\.$)")


def render_reference(registry: ContractRegistry) -> str:
    """The whole page, as Markdown."""
    contracts = list(registry)
    flows = sorted({contract.flow for contract in contracts})
    parts = [
        _header(contracts),
        _publishing(contracts),
        _outcomes(),
        *(_flow_section(flow, [c for c in contracts if c.flow == flow]) for flow in flows),
    ]
    return "\n".join(parts).rstrip("\n") + "\n"


def example_envelope(contract: Contract, version: int) -> dict[str, Any] | None:
    """A complete envelope carrying the contract's example for `version`, or None if it has none."""
    data = contract.examples.get(version)
    if data is None:
        return None
    name = f"urn:flowfleet:example:{contract.name}:v{version}"
    return {
        "message_id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        "contract": contract.name,
        "version": version,
        "occurred_at": EXAMPLE_OCCURRED_AT,
        "producer": EXAMPLE_PRODUCER,
        "correlation_id": "trace-" + uuid.uuid5(uuid.NAMESPACE_URL, name + ":trace").hex[:12],
        "data": data,
    }


def _header(contracts: list[Contract]) -> str:
    rows = [
        [
            f"`{c.name}`",
            f"`{c.flow}`",
            ", ".join(_version_label(c, v) for v in sorted(c.versions)),
            _code(formula) if (formula := _dedup_formula(c)) else "see below",
            c.summary,
        ]
        for c in sorted(contracts, key=lambda c: (c.flow, c.name))
    ]
    return "\n".join(
        [
            "# Contracts and wire format",
            "",
            f"<!-- Generated from contracts/published.py by `{REGENERATE}`. Do not edit by hand. -->",
            "",
            "This page is for teams that publish business events to flowfleet from any language. It says how",
            "to publish, what every contract looks like (fields, versions, keys, business rules, a full",
            "example), and what happens to a message that is wrong. It is generated from the same code",
            "that validates your messages, so it is never out of date.",
            "",
            "## Contracts at a glance",
            "",
            _table(["contract (= routing key)", "flow (= queue)", "versions", "dedup key", "summary"], rows),
            "",
        ]
    )


def _publishing(contracts: list[Contract]) -> str:
    envelope_schema = Envelope.model_json_schema()
    envelope_rows = [
        [*row, _cell(_ENVELOPE_MEANING.get(row[0].strip("`"), ""))]
        for row in _field_rows(envelope_schema, envelope_schema.get("$defs", {}))
    ]
    sample = next((c for c in contracts if c.latest_version in c.examples), None)
    lines = [
        "## How to publish",
        "",
        "Publish with any AMQP 0-9-1 client (pika, amqplib, RabbitMQ's Java or .NET client, …):",
        "",
        f"- **Exchange**: `{EXCHANGE}`, a durable **topic** exchange (flowfleet declares it).",
        "- **Routing key**: the contract name, e.g. `order.created` (the same string as the envelope's `contract`).",
        "  Each flow's queue is bound to the exchange by the names of its contracts.",
        "- **Properties**: persistent delivery (`delivery_mode=2`) and `content_type=application/json`.",
        f"- **Body**: one envelope (below) as UTF-8 JSON, at most {MAX_BODY_BYTES:,} bytes (1 MiB).",
        "- **Confirms**: use publisher confirms and the `mandatory` flag. A nack, or a message returned as",
        "  unroutable (a routing key that is not a contract name), means flowfleet never received it: publish",
        "  it again. Without `mandatory`, RabbitMQ drops an unroutable message and nobody sees it.",
        "",
        "You never build Dramatiq's internal message format: flowfleet reads this plain envelope.",
        "",
        "### The envelope",
        "",
        _table(["field", "type", "required", "constraints", "meaning"], envelope_rows),
        "",
        "Rules that hold for every contract:",
        "",
        "- Unknown envelope fields are ignored; unknown fields inside `data` are rejected (a typo is an",
        "  error, not silently lost data).",
        "- Types are strict: numbers are JSON numbers and whole numbers have no decimal point (`2`, not",
        '  `2.0` or `"2"`); strings are JSON strings.',
        "- Money is an integer count of the currency's minor unit (cents, pence, yen), never a float;",
        "  currencies are ISO 4217 codes (`EUR`), countries ISO 3166-1 alpha-2 codes (`DE`).",
        "- Text is UTF-8 in any script (`Größe`, `東京`).",
        "- In the field tables, `lines[].sku` is the `sku` of each element of `lines`; a nested field is",
        "  required only when its enclosing object is sent. Error reasons name fields by position:",
        "  `data.lines.0.sku`.",
        "- A few rules span several fields and are not in the JSON Schema (for example `line_id`s are",
        "  unique within one message); they are checked on arrival like the rest.",
        "",
    ]
    if sample is not None:
        lines += [
            f"A complete `{sample.name}` v{sample.latest_version} envelope:",
            "",
            _json_block(example_envelope(sample, sample.latest_version)),
            "",
        ]
    lines += [
        "### `message_id` and the dedup key",
        "",
        "Each contract declares a **dedup key** taken from its `data` (for `order.created` it is `order_id`).",
        "Two envelopes of one contract with the same dedup key have **one** effect, whatever their",
        "`message_id`s: republishing an event after a timeout or a crash is always safe, even with a new",
        "`message_id`. The other way round, two different events must have different dedup keys: a second",
        "partial capture needs its own `capture_id`, a new stock movement its own `sequence`.",
        "",
        "`message_id` identifies one message, not one event. Make it unique per message you send, and",
        "quote it when you ask the integration team about a message.",
        "",
        "### `occurred_at` and event order",
        "",
        "`occurred_at` is when the event happened at the source. An event that is more than 7 days old (the",
        "default) when it arrives is not applied (stage `expired`, below). `occurred_at` does not decide the",
        "order of events: where order matters, the contract carries its own sequence (`sequence`,",
        "`revision`, `effective_at`), and an event that is not newer than the state already applied is",
        "counted as **stale** and changes nothing. Events may arrive in any order: one that depends on",
        "another (a capture on its authorization, a delivery on its dispatch) and arrives first is retried for",
        "a while (20 minutes by default); if the other never arrives, it is dead-lettered with a reason that",
        "says what it waited for.",
        "",
        "### Versions",
        "",
        "Publish the **latest** version of a contract. Older versions are still accepted: they are validated",
        "against their own schema, then upcast (converted) to the latest version before any business rule",
        "runs. Each older version below says how it is upcast.",
        "",
        "### JSON Schemas",
        "",
        "Every contract version has a JSON Schema (draft 2020-12) of the whole envelope carrying it, for",
        "validating messages in your own tests:",
        "",
        "```sh",
        "flowfleet contracts list",
        "flowfleet contracts schema order.created --version 2",
        "```",
        "",
    ]
    return "\n".join(lines)


def _outcomes() -> str:
    stages = [
        [
            "`decode`",
            f"The body is above {MAX_BODY_BYTES:,} bytes, not UTF-8, not JSON, not a JSON object, or not a valid "
            "envelope (a field missing, `version` not an integer, `occurred_at` without a UTC offset, …).",
            "No: dead-lettered on the first attempt.",
        ],
        [
            "`contract`",
            "Unknown contract or version, a contract sent to another flow's queue, or `data` that fails the "
            "contract's validation; the reason lists the failing field paths (`data.lines.0.quantity`).",
            "No: dead-lettered on the first attempt.",
        ],
        [
            "`handler`",
            "A business rule rejects the event (e.g. a capture above what was authorized), **or** something "
            "that may succeed later failed (the database is away, the event arrived before the one it "
            "depends on).",
            "Business rejections: no. The rest: yes, with exponential backoff and jitter, by default up to 6 "
            "attempts within 20 minutes (throttling by a downstream system does not count); then dead-lettered "
            "with the final error.",
        ],
        [
            "`expired`",
            "`occurred_at` is more than 7 days (the default) before the event arrived.",
            "No: dead-lettered on the first attempt.",
        ],
        [
            "`delivery`",
            "Your event **was applied**; a downstream system (ERP, channels, notify, payments) refused the request "
            "it caused for good (a 4xx), or did not take it within its delivery budget (24 h by default).",
            "The request, yes: a downstream outage only delays it (it is sent after the system is back). "
            "Nothing for you to resend: on-call replays the request after the fix.",
        ],
    ]
    return "\n".join(
        [
            "## What happens to your message",
            "",
            "- **Applied** once: its effect is stored and sent on to the systems downstream.",
            "- **Duplicate**: an event with the same contract and dedup key was already applied; nothing changes.",
            "- **Stale**: older than state already applied (see each contract's rules); counted, nothing changes.",
            "- **Retried**: it may succeed later (see `handler` below); other messages keep flowing meanwhile.",
            "- **Dead-lettered**: it cannot be applied. It is recorded with its stage and reason in flowfleet's",
            "  dead-letter archive, where it stays until an operator replays, discards or resolves it.",
            "",
            "Nothing is silently dropped, and a bad message never holds up the messages behind it. Every failure",
            "has one of five stages:",
            "",
            _table(["stage", "what it means", "retried?"], stages),
            "",
            "When your message is dead-lettered, the integration team's on-call sees the stage, the reason and",
            "the `producer`, and contacts you; fix the cause and publish again (the dedup key keeps that safe).",
            "",
        ]
    )


def _flow_section(flow: str, contracts: list[Contract]) -> str:
    names = ", ".join(f"`{c.name}`" for c in contracts)
    lines = [
        f"## Flow `{flow}`",
        "",
        f"Queue `{flow}`, bound to `{EXCHANGE}` by the routing keys {names}.",
        "",
        f"### Rules of the `{flow}` flow",
        "",
        *(f"- **`{c.name}`**: {_one_paragraph(_docstring(c.latest_model))}" for c in contracts),
        "",
    ]
    for contract in contracts:
        lines += _contract_section(contract)
    return "\n".join(lines)


def _contract_section(contract: Contract) -> list[str]:
    formula = _dedup_formula(contract)
    keys, dedup_value = _example_keys(contract)
    dedup = _code(formula) if formula else "derived from `data`"
    if dedup_value is not None:
        dedup += f" (for the example: {_code(dedup_value)})"
    lines = [
        f"### `{contract.name}`",
        "",
        contract.summary,
        "",
        f"- **Versions**: {', '.join(_version_label(contract, v) for v in sorted(contract.versions))}",
        f"- **Dedup key**: {dedup}",
        f"- **Business keys** (recorded on each of its dead letters): "
        f"{', '.join(f'`{key}`' for key in keys) if keys else '-'}",
        "",
    ]
    for version in sorted(contract.versions, reverse=True):
        lines += _version_section(contract, version)
    return lines


def _version_section(contract: Contract, version: int) -> list[str]:
    schema = contract_schema(contract, version)
    data = schema["properties"]["data"]
    lines = [f"#### `{contract.name}` {_version_label(contract, version)}", ""]
    if version != contract.latest_version:
        lines += [_one_paragraph(_docstring(contract.versions[version])), ""]
        upcaster = contract.upcasters[version]
        how = _one_paragraph(inspect.cleandoc(upcaster.__doc__ or ""))
        lines += [f"Accepted, and upcast to v{version + 1} before it is applied. {how}".rstrip(), ""]
    lines += [
        f"JSON Schema: `flowfleet contracts schema {contract.name} --version {version}`",
        "",
        "Fields of `data`:",
        "",
        _table(["field", "type", "required", "constraints"], _field_rows(data, schema.get("$defs", {}))),
        "",
    ]
    envelope = example_envelope(contract, version)
    if envelope is None:
        lines += ["No example yet.", ""]
    else:
        lines += ["Example envelope:", "", _json_block(envelope), ""]
    return lines


def _version_label(contract: Contract, version: int) -> str:
    return f"v{version} (latest)" if version == contract.latest_version else f"v{version}"


def _dedup_formula(contract: Contract) -> str | None:
    match = _DEDUP_IN_SUMMARY.search(contract.summary)
    return match.group("key").strip() if match else None


def _example_keys(contract: Contract) -> tuple[list[str], str | None]:
    """The business key names and the dedup key value of the contract's newest example."""
    if not contract.examples:
        return [], None
    version = max(contract.examples)
    event = contract.parse(version, contract.examples[version])
    return sorted(contract.business_keys(event)), contract.dedup_key(event)


def _docstring(model: type[Any]) -> str:
    return inspect.cleandoc(model.__doc__) if model.__doc__ else ""


def _one_paragraph(text: str) -> str:
    return " ".join(" ".join(part.split()) for part in re.split(r"\n\s*\n", text) if part.strip())


# --- field tables from JSON Schema -------------------------------------------------------------


def _field_rows(node: Mapping[str, Any], defs: Mapping[str, Any], prefix: str = "") -> list[list[str]]:
    rows: list[list[str]] = []
    required = set(node.get("required", ()))
    for name, prop in node.get("properties", {}).items():
        schema, nullable = _unwrap(prop, defs)
        kind = _type_of(schema, defs) + (" or null" if nullable else "")
        rows.append(
            [
                f"`{prefix}{name}`",
                _cell(kind),
                _cell(_required(name in required, prop)),
                _cell(_constraints(schema, defs)),
            ]
        )
        if _is_record(schema):
            rows += _field_rows(schema, defs, f"{prefix}{name}.")
        elif schema.get("type") == "array":
            items = _resolve(schema.get("items", {}), defs)
            if _is_record(items):
                rows += _field_rows(items, defs, f"{prefix}{name}[].")
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


# --- Markdown --------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Table cells may not hold a bare `|`, not even inside a code span (GitHub's rule)."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def _json_block(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=2, ensure_ascii=False) + "\n```"


if __name__ == "__main__":
    sys.stdout.buffer.write(render_reference(REGISTRY).encode("utf-8"))
