"""JSON Schema export per contract version, for upstream teams who do not read Python."""

from __future__ import annotations

from typing import Any

from contracts.envelope import Envelope
from contracts.registry import Contract


def contract_schema(contract: Contract, version: int | None = None) -> dict[str, Any]:
    """The JSON Schema of one version's `data`, wrapped in the envelope that carries it."""
    chosen = contract.latest_version if version is None else version
    model = contract.versions.get(chosen)
    if model is None:
        raise KeyError(f"{contract.name} has no version {chosen}")
    envelope = Envelope.model_json_schema()
    data_schema = model.model_json_schema()
    definitions = data_schema.pop("$defs", {})
    envelope_properties = dict(envelope["properties"])
    envelope_properties["contract"] = {"const": contract.name, "type": "string"}
    envelope_properties["version"] = {"const": chosen, "type": "integer"}
    envelope_properties["data"] = data_schema
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{contract.name} v{chosen}",
        "description": contract.summary,
        "type": "object",
        "properties": envelope_properties,
        "required": envelope["required"],
    }
    if definitions:
        schema["$defs"] = definitions
    return schema
