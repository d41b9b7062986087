"""The contracts page (docs/contracts.md): the prose in reference_page.md, filled from the registry and the
fleet's defaults, so that neither a contract nor a default can change without the page saying so."""

from __future__ import annotations

import inspect
import re
import uuid
from dataclasses import dataclass
from importlib.resources import files
from string import Template
from typing import Any

from contracts.envelope import MAX_BODY_BYTES, Envelope
from contracts.reference_tables import EXAMPLE_OCCURRED_AT, cell, code, field_rows, json_block, table
from contracts.registry import Contract, ContractRegistry
from contracts.schema import contract_schema
from contracts.types import CODE_PATTERN, ID_PATTERN

#: contracts may not import the settings (they live in workers), so the test that checks the page is also
#: what writes it, with the settings' defaults.
REGENERATE = "REGENERATE_DOCS=1 .venv/bin/pytest -q tests/contracts/test_reference_page.py"
EXCHANGE = "commerce.events"
EXAMPLE_PRODUCER = "your-system"

_ENVELOPE_MEANING = {
    "message_id": (
        "Unique id of this one message (a UUID is a good choice). It names the message in logs and in the "
        "dead-letter archive. It does **not** decide what is a duplicate: the dedup key does."
    ),
    "contract": "The contract name, e.g. `order.created`. The routing key must be the same string.",
    "version": 'The contract version `data` follows: a JSON integer (`2`, not `"2"`).',
    "occurred_at": (
        "When the event happened in your system (not when you published it): an RFC 3339 string with a UTC "
        "offset, never a number. Used for the expiry check and lag metrics, never to order events."
    ),
    "producer": "Your system's name (e.g. `storefront`); on-call uses it to find you when a message is rejected.",
    "correlation_id": "Optional: your request or trace id; it is carried into the workers' logs.",
    "data": "The contract's payload: exactly the fields of the contract version's table below.",
}

_DEDUP_IN_SUMMARY = re.compile(r"Dedup key: (?P<key>[^;]+?)(?:;|\.\s|\.$)")
_IDENTIFIER_RULES = {ID_PATTERN: "visible ASCII", CODE_PATTERN: "visible ASCII, no `@` or `#`"}


@dataclass(frozen=True)
class FleetDefaults:
    """The defaults of the fleet's settings that the page states; the caller reads them from the settings."""

    max_event_age_seconds: int
    retry_window_seconds: int
    max_attempts: int
    #: The ERP's delivery budget stands for all systems' on the page (they share one default).
    delivery_budget_seconds: int = 24 * 3600


def render_reference(registry: ContractRegistry, defaults: FleetDefaults) -> str:
    """The whole page, as Markdown."""
    contracts = list(registry)
    flows = sorted({contract.flow for contract in contracts})
    page = Template(files("contracts").joinpath("reference_page.md").read_text(encoding="utf-8")).substitute(
        regenerate=REGENERATE,
        exchange=EXCHANGE,
        max_body_bytes=f"{MAX_BODY_BYTES:,}",
        max_event_age=_duration(defaults.max_event_age_seconds),
        retry_window=_duration(defaults.retry_window_seconds),
        example_occurred_at=EXAMPLE_OCCURRED_AT,
        contracts_at_a_glance=_at_a_glance(contracts),
        envelope_table=_envelope_table(),
        sample_envelope=_sample_envelope(contracts),
        identifier_table=_identifier_table(contracts),
        stages_table=_stages_table(defaults),
    )
    parts = [page, *(_flow_section(flow, [c for c in contracts if c.flow == flow]) for flow in flows)]
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


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def _at_a_glance(contracts: list[Contract]) -> str:
    rows = [
        [
            f"`{c.name}`",
            f"`{c.flow}`",
            ", ".join(_version_label(c, v) for v in sorted(c.versions)),
            code(formula) if (formula := _dedup_formula(c)) else "see below",
            c.summary,
        ]
        for c in sorted(contracts, key=lambda c: (c.flow, c.name))
    ]
    return table(["contract (= routing key)", "flow (= queue)", "versions", "dedup key", "summary"], rows)


def _envelope_table() -> str:
    schema = Envelope.model_json_schema()
    rows = [
        [*row, cell(_ENVELOPE_MEANING.get(row[0].strip("`"), ""))]
        for row in field_rows(schema, schema.get("$defs", {}))
    ]
    return table(["field", "type", "required", "constraints", "meaning"], rows)


def _sample_envelope(contracts: list[Contract]) -> str:
    sample = next((c for c in contracts if c.latest_version in c.examples), None)
    if sample is None:
        return ""
    envelope = example_envelope(sample, sample.latest_version)
    return f"A complete `{sample.name}` v{sample.latest_version} envelope:\n\n{json_block(envelope)}"


def _identifier_table(contracts: list[Contract]) -> str:
    """Per contract's latest version: which fields are identifiers, and what each may contain."""
    rows = []
    for contract in sorted(contracts, key=lambda c: (c.flow, c.name)):
        schema = contract_schema(contract)
        found: dict[str, list[str]] = {}
        for path, pattern in _patterned_fields(schema["properties"]["data"], schema.get("$defs", {})):
            if pattern in _IDENTIFIER_RULES:
                found.setdefault(_IDENTIFIER_RULES[pattern], []).append(f"`{path}`")
        for rule, paths in found.items():
            rows.append([f"`{contract.name}` v{contract.latest_version}", ", ".join(paths), rule])
    return table(["contract", "identifier fields", "may contain (1 to 64 characters)"], rows)


def _patterned_fields(node: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name, prop in node.get("properties", {}).items():
        options = prop.get("anyOf", [prop])
        for option in options:
            resolved = defs[option["$ref"].removeprefix("#/$defs/")] if "$ref" in option else option
            if "pattern" in resolved:
                found.append((f"{prefix}{name}", resolved["pattern"]))
            elif resolved.get("type") == "object":
                found += _patterned_fields(resolved, defs, f"{prefix}{name}.")
            elif resolved.get("type") == "array":
                items = resolved.get("items", {})
                items = defs[items["$ref"].removeprefix("#/$defs/")] if "$ref" in items else items
                found += _patterned_fields(items, defs, f"{prefix}{name}[].")
    return found


def _stages_table(defaults: FleetDefaults) -> str:
    stages = [
        [
            "`decode`",
            f"The body is above {MAX_BODY_BYTES:,} bytes, not UTF-8, starts with a byte order mark, is not JSON, "
            "not a JSON object, or not a valid envelope (a field missing, `version` not an integer, "
            "`occurred_at` without a UTC offset, …).",
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
            "Business rejections: no. The rest: yes, with exponential backoff and jitter, by default up to "
            f"{defaults.max_attempts} attempts within {_duration(defaults.retry_window_seconds)} (throttling by a "
            "downstream system does not count); then dead-lettered with the final error.",
        ],
        [
            "`expired`",
            f"`occurred_at` is more than {_duration(defaults.max_event_age_seconds)} (the default) before the "
            "event arrived.",
            "No: dead-lettered on the first attempt.",
        ],
        [
            "`delivery`",
            "Your event **was applied**; a downstream system (ERP, channels, notify, payments) refused the request "
            "it caused for good (a 4xx), or did not take it within its delivery budget "
            f"({_duration(defaults.delivery_budget_seconds)} by default).",
            "The request, yes: a downstream outage only delays it (it is sent after the system is back). "
            "Nothing for you to resend: on-call replays the request after the fix.",
        ],
    ]
    return table(["stage", "what it means", "retried?"], stages)


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
    dedup = code(formula) if formula else "derived from `data`"
    if dedup_value is not None:
        dedup += f" (for the example: {code(dedup_value)})"
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
        table(["field", "type", "required", "constraints"], field_rows(data, schema.get("$defs", {}))),
        "",
    ]
    envelope = example_envelope(contract, version)
    if envelope is None:
        lines += ["No example yet.", ""]
    else:
        lines += ["Example envelope:", "", json_block(envelope), ""]
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
