"""The registry resolves a contract by name and version, upcasts it to the latest, and rejects the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from contracts.envelope import Envelope
from contracts.errors import ContractViolation
from contracts.orders import OrderCreatedV2
from contracts.published import REGISTRY
from contracts.registry import Contract, ContractRegistry


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CountedV1(_Frozen):
    widget: str
    n: int


class CountedV2(_Frozen):
    widget: str
    count: int


class CountedV3(_Frozen):
    widget: str
    count: int
    unit: str


def counted_v1_v2(event: CountedV1) -> CountedV2:
    return CountedV2(widget=event.widget, count=event.n)


def counted_v2_v3(event: CountedV2) -> CountedV3:
    return CountedV3(widget=event.widget, count=event.count, unit="piece")


def widget_counted(flow: str = "widgets") -> Contract:
    return Contract(
        name="widget.counted",
        flow=flow,
        versions={1: CountedV1, 2: CountedV2, 3: CountedV3},
        upcasters={1: counted_v1_v2, 2: counted_v2_v3},
        dedup_key=lambda event: f"{event.widget}:{event.count}",
        business_keys=lambda event: {"widget": event.widget},
    )


def an_envelope(contract: str, version: int, data: dict[str, Any]) -> Envelope:
    return Envelope(
        message_id="m-1",
        contract=contract,
        version=version,
        occurred_at=datetime(2026, 11, 22, 10, tzinfo=UTC),
        producer="tests",
        data=data,
    )


ORDER_V2: dict[str, Any] = {
    "order_id": "ORD-1",
    "channel": "storefront",
    "customer": {"email": "ana@example.com"},
    "currency": "EUR",
    "lines": [{"line_id": "a", "sku": "TEE", "quantity": 1, "unit_price_minor": 500}],
    "total_minor": 500,
}


def test_an_oldest_version_is_upcast_step_by_step_to_the_latest() -> None:
    event = widget_counted().parse(1, {"widget": "w-1", "n": 4})

    assert event == CountedV3(widget="w-1", count=4, unit="piece")


def test_a_middle_version_is_upcast_only_through_the_remaining_steps() -> None:
    event = widget_counted().parse(2, {"widget": "w-1", "count": 9})

    assert event == CountedV3(widget="w-1", count=9, unit="piece")


def test_the_latest_version_is_validated_and_returned_as_is() -> None:
    contract = widget_counted()

    assert contract.latest_version == 3
    assert contract.latest_model is CountedV3
    latest = {"widget": "w", "count": 1, "unit": "kg"}
    assert contract.parse(3, latest) == CountedV3(widget="w", count=1, unit="kg")


def test_a_contract_with_a_version_that_cannot_reach_the_latest_is_refused_at_definition() -> None:
    with pytest.raises(ValueError, match=r"versions \[1\] have no upcaster"):
        Contract(
            name="widget.counted",
            flow="widgets",
            versions={1: CountedV1, 2: CountedV2},
            upcasters={},
            dedup_key=lambda event: event.widget,
            business_keys=lambda event: {},
        )


def test_registering_the_same_contract_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        ContractRegistry([widget_counted(), widget_counted(flow="other")])


def test_an_unknown_contract_is_a_contract_violation_naming_it() -> None:
    with pytest.raises(ContractViolation, match=r"unknown contract 'order\.exploded'") as caught:
        REGISTRY.parse(an_envelope("order.exploded", 1, {}), flow="orders")

    assert caught.value.stage == "contract"


def test_an_unknown_version_is_a_contract_violation_listing_the_known_ones() -> None:
    with pytest.raises(ContractViolation) as caught:
        REGISTRY.parse(an_envelope("order.created", 7, ORDER_V2), flow="orders")

    assert caught.value.reason == "order.created has no version 7 (known: 1, 2)"


def test_a_contract_that_belongs_to_another_flow_is_rejected_on_this_flow() -> None:
    with pytest.raises(ContractViolation) as caught:
        REGISTRY.parse(an_envelope("order.created", 2, ORDER_V2), flow="inventory")

    assert "belongs to flow 'orders', not 'inventory'" in caught.value.reason


def test_invalid_data_is_rejected_with_field_paths_under_data() -> None:
    data = {**ORDER_V2, "total_minor": -1}

    with pytest.raises(ContractViolation) as caught:
        REGISTRY.parse(an_envelope("order.created", 2, data), flow="orders")

    assert caught.value.field_paths == ("data.total_minor",)
    assert caught.value.reason.startswith("order.created v2 is invalid: data.total_minor:")


def test_a_parsed_event_carries_the_latest_model_its_dedup_key_and_business_keys() -> None:
    envelope = an_envelope("order.created", 2, ORDER_V2)

    parsed = REGISTRY.parse(envelope, flow="orders")

    assert parsed.envelope is envelope
    assert parsed.contract.name == "order.created"
    assert isinstance(parsed.event, OrderCreatedV2)
    assert parsed.dedup_key == "ORD-1"
    assert parsed.business_keys == {"order_id": "ORD-1"}


def test_dedup_and_business_keys_are_computed_on_the_upcast_event() -> None:
    registry = ContractRegistry([widget_counted()])

    parsed = registry.parse(an_envelope("widget.counted", 1, {"widget": "w-9", "n": 2}), flow="widgets")

    assert parsed.dedup_key == "w-9:2"
    assert parsed.business_keys == {"widget": "w-9"}


def test_the_registry_lists_contracts_by_name_and_per_flow() -> None:
    registry = ContractRegistry([widget_counted(), *REGISTRY.for_flow("orders")])

    assert [c.name for c in registry] == ["order.cancelled", "order.created", "widget.counted"]
    assert [c.name for c in registry.for_flow("orders")] == ["order.cancelled", "order.created"]
    assert registry.for_flow("payments") == []


def test_every_flow_of_the_fleet_has_its_contracts_and_every_contract_an_example_that_parses() -> None:
    flows = {contract.flow for contract in REGISTRY}

    assert flows == {"orders", "inventory", "payments", "fulfillment", "returns", "catalog"}
    for contract in REGISTRY:
        assert set(contract.examples) == set(contract.versions), contract.name
        for version, example in contract.examples.items():
            event = contract.parse(version, example)
            assert contract.dedup_key(event), contract.name
            assert contract.business_keys(event), contract.name


def test_the_published_registry_holds_order_created_in_the_orders_flow() -> None:
    contract = REGISTRY.get("order.created")

    assert contract.flow == "orders"
    assert contract.latest_version == 2
