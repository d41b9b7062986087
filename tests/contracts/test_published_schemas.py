"""Every published JSON Schema agrees with the fleet: what a contract version's schema accepts, the fleet accepts."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from contracts.envelope import decode_envelope
from contracts.errors import RejectedMessage
from contracts.published import REGISTRY
from contracts.reference import example_envelope
from contracts.schema import contract_schema

VERSIONS = [(contract.name, version) for contract in REGISTRY for version in sorted(contract.versions)]


def fleet_accepts(document: dict[str, Any]) -> bool:
    """The worker's own path: decode the bytes, then validate and upcast against the contract."""
    contract = REGISTRY.get(document["contract"])
    try:
        REGISTRY.parse(decode_envelope(json.dumps(document).encode("utf-8")), flow=contract.flow)
    except RejectedMessage:
        return False
    return True


def schema_accepts(schema: dict[str, Any], document: dict[str, Any]) -> bool:
    """As a publisher's validator does it, with the format checker on (`date-time` is checked)."""
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return validator.is_valid(document)


def line_ids_unique(document: Any) -> bool:
    """The one rule JSON Schema cannot state (it is in the schema's description instead)."""
    lines = document["data"].get("lines") or []
    ids = [line["line_id"].strip() for line in lines if isinstance(line, dict) and "line_id" in line]
    return len(ids) == len(set(ids))


@pytest.mark.parametrize(("name", "version"), VERSIONS, ids=[f"{n}-v{v}" for n, v in VERSIONS])
def test_every_payload_the_published_schema_accepts_is_accepted_by_the_fleet(name: str, version: int) -> None:
    schema = contract_schema(REGISTRY.get(name), version)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(from_schema(schema).filter(line_ids_unique))
    def accepted(document: dict[str, Any]) -> None:
        assert fleet_accepts(document), json.dumps(document, ensure_ascii=False)[:2000]

    accepted()


@pytest.mark.parametrize(("name", "version"), VERSIONS, ids=[f"{n}-v{v}" for n, v in VERSIONS])
def test_a_rule_json_schema_cannot_state_is_stated_in_the_schemas_description(name: str, version: int) -> None:
    data = contract_schema(REGISTRY.get(name), version)["properties"]["data"]
    lines = data["properties"].get("lines")
    if lines is not None and "line_id" in json.dumps(data.get("$defs", {})) + json.dumps(lines):
        assert "unique" in lines.get("description", ""), f"{name} v{version}: lines do not say line_id is unique"


def _example(name: str) -> dict[str, Any]:
    contract = REGISTRY.get(name)
    document = example_envelope(contract, contract.latest_version)
    assert document is not None
    copy: dict[str, Any] = json.loads(json.dumps(document))
    return copy


def _with(name: str, path: str, value: Any) -> dict[str, Any]:
    document = _example(name)
    *parents, last = path.split(".")
    node: Any = document
    for step in parents:
        node = node[int(step)] if step.isdigit() else node[step]
    node[last] = value
    return document


REFUSED_BY_BOTH = {
    "an id blank after trimming": _with("order.cancelled", "data.order_id", "   "),
    "an id with a space inside": _with("order.cancelled", "data.order_id", "ORD-3 Ä€"),
    "an id with a CR/LF": _with("order.cancelled", "data.order_id", "ORD-4\r\nX-Admin: yes"),
    "an id beyond ASCII": _with("payment.authorized", "data.payment_id", "PAY-Ä"),
    "a sku with the key separator @": _with("inventory.counted", "data.sku", "TEE@berlin"),
    "an id longer than 64": _with("order.cancelled", "data.order_id", "O" * 65),
    "a zero delta": _with("inventory.adjusted", "data.delta", 0),
    "a receipt that removes stock": _with("inventory.adjusted", "data.delta", -3),
    "occurred_at as Date.now() milliseconds": _with("order.cancelled", "occurred_at", 1764633600000),
    "occurred_at as a string of digits": _with("order.cancelled", "occurred_at", "1764633600000"),
    "occurred_at without an offset": _with("order.cancelled", "occurred_at", "2026-11-24T15:00:00"),
    "a delivery time as milliseconds": _with("shipment.delivered", "data.delivered_at", 1764633600000),
}


@pytest.mark.parametrize("document", REFUSED_BY_BOTH.values(), ids=REFUSED_BY_BOTH.keys())
def test_what_the_fleet_refuses_the_published_schema_refuses_too(document: dict[str, Any]) -> None:
    schema = contract_schema(REGISTRY.get(document["contract"]), document["version"])

    assert not fleet_accepts(document)
    assert not schema_accepts(schema, document)


ACCEPTED_BY_BOTH = {
    "the longest id": _with("order.cancelled", "data.order_id", "O" * 64),
    "an id of every visible ASCII character": _with(
        "order.cancelled", "data.order_id", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    ),
    "a sku with slash and colon": _with("inventory.counted", "data.sku", "TEE/RED:M"),
}


@pytest.mark.parametrize("document", ACCEPTED_BY_BOTH.values(), ids=ACCEPTED_BY_BOTH.keys())
def test_the_identifiers_the_contract_allows_are_accepted_by_both(document: dict[str, Any]) -> None:
    schema = contract_schema(REGISTRY.get(document["contract"]), document["version"])

    assert fleet_accepts(document)
    assert schema_accepts(schema, document)


def test_the_sample_envelopes_are_still_valid_for_both() -> None:
    for name, version in VERSIONS:
        contract = REGISTRY.get(name)
        document = example_envelope(contract, version)
        assert document is not None
        assert fleet_accepts(document) and schema_accepts(contract_schema(contract, version), document), name


def test_hypothesis_strategies_can_be_built_for_every_schema() -> None:
    for name, version in VERSIONS:
        assert isinstance(from_schema(contract_schema(REGISTRY.get(name), version)), st.SearchStrategy)
