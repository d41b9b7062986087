"""`order.created` accepts real orders (v1 upcast to v2), rejects bad ones by field path, exports a schema."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import ContractViolation
from contracts.orders import ORDER_CREATED, OrderCreatedV1, OrderCreatedV2, upcast_v1_v2
from contracts.schema import contract_schema


def order_v2(**overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(ORDER_CREATED.examples[2])
    data.update(overrides)
    return data


def order_v1(**overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(ORDER_CREATED.examples[1])
    data.update(overrides)
    return data


def violation(version: int, data: dict[str, Any]) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        ORDER_CREATED.parse(version, data)
    return caught.value


# --- validation -------------------------------------------------------------------------------


def test_the_documented_v2_example_is_a_valid_order() -> None:
    order = ORDER_CREATED.parse(2, order_v2())

    assert isinstance(order, OrderCreatedV2)
    assert order.order_id == "ORD-1001"
    assert order.tax_exempt is False


def test_a_bad_line_quantity_is_reported_at_its_full_field_path() -> None:
    data = order_v2()
    data["lines"][0]["quantity"] = 0

    rejection = violation(2, data)

    assert rejection.field_paths == ("data.lines.0.quantity",)
    assert "data.lines.0.quantity: Input should be greater than 0" in rejection.reason


def test_every_invalid_field_is_listed_once() -> None:
    data = order_v2(currency="euro", channel="fax")
    data["customer"]["email"] = "not-an-email"

    rejection = violation(2, data)

    assert set(rejection.field_paths) == {"data.currency", "data.channel", "data.customer.email"}
    assert len(rejection.field_paths) == 3


def test_float_money_is_rejected_even_when_it_looks_like_cents() -> None:
    data = order_v2()
    data["lines"][0]["unit_price_minor"] = 19.99

    assert violation(2, data).field_paths == ("data.lines.0.unit_price_minor",)


def test_a_whole_float_is_not_accepted_as_money_either() -> None:
    assert violation(2, order_v2(total_minor=3998.0)).field_paths == ("data.total_minor",)


def test_a_quantity_sent_as_a_string_is_rejected_strictly() -> None:
    data = order_v2()
    data["lines"][0]["quantity"] = "2"

    assert violation(2, data).field_paths == ("data.lines.0.quantity",)


def test_duplicate_line_ids_are_rejected() -> None:
    line = order_v2()["lines"][0]
    data = order_v2(lines=[line, {**line, "sku": "TEE-BLUE-M"}])

    rejection = violation(2, data)

    assert "line_id values must be unique" in rejection.reason
    assert rejection.field_paths == ("data",)


def test_an_order_without_lines_is_rejected() -> None:
    assert violation(2, order_v2(lines=[])).field_paths == ("data.lines",)


def test_unknown_data_fields_are_rejected_rather_than_silently_dropped() -> None:
    assert violation(2, order_v2(coupon="XMAS")).field_paths == ("data.coupon",)


def test_non_ascii_names_addresses_and_titles_are_accepted_unchanged() -> None:
    data = order_v2()
    data["customer"]["name"] = "Zoë Øster-Åberg 王小明"
    data["ship_to"]["city"] = "Łódź"
    data["lines"][0]["title"] = "Тёплый свитер ☃"

    order = ORDER_CREATED.parse(2, data)

    assert isinstance(order, OrderCreatedV2)
    assert order.customer.name == "Zoë Øster-Åberg 王小明"
    assert order.ship_to is not None
    assert order.ship_to.city == "Łódź"
    assert order.lines[0].title == "Тёплый свитер ☃"


@pytest.mark.parametrize("channel", ["storefront", "marketplace:amazon_de", "marketplace:zalando-1"])
def test_storefront_and_named_marketplaces_are_valid_channels(channel: str) -> None:
    order = ORDER_CREATED.parse(2, order_v2(channel=channel))

    assert isinstance(order, OrderCreatedV2)
    assert order.channel == channel


@pytest.mark.parametrize("channel", ["marketplace:", "Marketplace:amazon", "marketplace:AMAZON", "ebay"])
def test_other_channels_are_rejected(channel: str) -> None:
    assert violation(2, order_v2(channel=channel)).field_paths == ("data.channel",)


# --- keys ------------------------------------------------------------------------------------


def test_the_dedup_key_is_the_order_id() -> None:
    order = ORDER_CREATED.parse(2, order_v2(order_id="ORD-42"))

    assert ORDER_CREATED.dedup_key(order) == "ORD-42"
    assert ORDER_CREATED.business_keys(order) == {"order_id": "ORD-42"}


def test_a_v1_and_a_v2_of_the_same_order_share_a_dedup_key() -> None:
    from_v1 = ORDER_CREATED.parse(1, order_v1(order_id="ORD-7"))
    from_v2 = ORDER_CREATED.parse(2, order_v2(order_id="ORD-7"))

    assert ORDER_CREATED.dedup_key(from_v1) == ORDER_CREATED.dedup_key(from_v2)


# --- upcasting ---------------------------------------------------------------------------------


def test_a_v1_order_is_upcast_to_v2_before_the_handler_sees_it() -> None:
    data = order_v1(
        items=[
            {"sku": "MUG-BLUE", "qty": 1, "unit_price_cents": 1200},
            {"sku": "MUG-RED", "qty": 3, "unit_price_cents": 900},
        ],
        total_cents=3900,
    )

    order = ORDER_CREATED.parse(1, data)

    assert isinstance(order, OrderCreatedV2)
    assert order.channel == "storefront"
    assert order.customer.email == "bo@example.com"
    assert order.customer.customer_id is None
    assert order.currency == "EUR"
    assert order.total_minor == 3900
    assert [(line.line_id, line.sku, line.quantity, line.unit_price_minor) for line in order.lines] == [
        ("1", "MUG-BLUE", 1, 1200),
        ("2", "MUG-RED", 3, 900),
    ]


def test_an_invalid_v1_order_is_reported_with_v1_field_paths() -> None:
    data = order_v1()
    data["items"][0]["qty"] = -1

    rejection = violation(1, data)

    assert rejection.field_paths == ("data.items.0.qty",)
    assert rejection.reason.startswith("order.created v1 is invalid:")


def test_v2_fields_are_not_accepted_in_a_v1_order() -> None:
    assert violation(1, order_v1(channel="storefront")).field_paths == ("data.channel",)


skus = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=64)
v1_items = st.fixed_dictionaries(
    {"sku": skus, "qty": st.integers(1, 100_000), "unit_price_cents": st.integers(0, 10**5)}
)


@st.composite
def v1_orders(draw: st.DrawFn) -> OrderCreatedV1:
    items: list[dict[str, Any]] = draw(st.lists(v1_items, min_size=1, max_size=30))
    return OrderCreatedV1.model_validate(
        {
            "order_id": draw(st.from_regex(r"\AORD-[0-9]{1,10}\Z")),
            "email": draw(st.from_regex(r"\A[a-z]{1,10}@[a-z]{1,10}\.[a-z]{2,3}\Z")),
            "currency": draw(st.sampled_from(["EUR", "USD", "GBP", "JPY"])),
            "items": items,
            "total_cents": sum(item["qty"] * item["unit_price_cents"] for item in items),
        }
    )


@given(v1_orders())
def test_any_valid_v1_order_upcasts_to_a_v2_with_the_same_total_lines_and_keys(v1: OrderCreatedV1) -> None:
    v2 = upcast_v1_v2(v1)

    assert v2.total_minor == v1.total_cents
    assert len(v2.lines) == len(v1.items)
    assert [line.line_id for line in v2.lines] == [str(n) for n in range(1, len(v1.items) + 1)]
    assert [(line.sku, line.quantity, line.unit_price_minor) for line in v2.lines] == [
        (item.sku, item.qty, item.unit_price_cents) for item in v1.items
    ]
    assert sum(line.quantity * line.unit_price_minor for line in v2.lines) == v2.total_minor
    assert v2.customer.email == v1.email
    assert ORDER_CREATED.dedup_key(v2) == v1.order_id
    assert OrderCreatedV2.model_validate(v2.model_dump()) == v2


# --- JSON Schema export -----------------------------------------------------------------------


def schema_errors(  # noqa: PLR0911 - one early return per keyword reads best
    schema: dict[str, Any], value: Any, root: dict[str, Any], at: str = ""
) -> list[str]:
    """Checks the JSON Schema keywords pydantic emits for these contracts (no validator is installed)."""
    if "$ref" in schema:
        return schema_errors(root["$defs"][schema["$ref"].removeprefix("#/$defs/")], value, root, at)
    if "anyOf" in schema:
        options = [schema_errors(option, value, root, at) for option in schema["anyOf"]]
        return [] if any(not found for found in options) else [f"{at}: matches no anyOf option"]
    if "const" in schema and value != schema["const"]:
        return [f"{at}: is not {schema['const']!r}"]
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    kind = schema.get("type")
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return [f"{at}: not an integer"]
    if kind in kinds and not isinstance(value, kinds[kind]):
        return [f"{at}: not of type {kind}"]
    if isinstance(value, dict):
        return _object_errors(schema, value, root, at)
    if isinstance(value, list):
        return _array_errors(schema, value, root, at)
    return _scalar_errors(schema, value, at)


def _object_errors(schema: dict[str, Any], value: dict[str, Any], root: dict[str, Any], at: str) -> list[str]:
    properties = schema.get("properties", {})
    errors = [f"{at}.{key}: required" for key in schema.get("required", []) if key not in value]
    if schema.get("additionalProperties") is False:
        errors += [f"{at}.{key}: not allowed" for key in value if key not in properties]
    for key, item in value.items():
        if key in properties:
            errors += schema_errors(properties[key], item, root, f"{at}.{key}")
    return errors


def _array_errors(schema: dict[str, Any], value: list[Any], root: dict[str, Any], at: str) -> list[str]:
    errors = []
    if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
        errors.append(f"{at}: wrong number of items")
    for index, item in enumerate(value):
        errors += schema_errors(schema.get("items", {}), item, root, f"{at}.{index}")
    return errors


def _scalar_errors(schema: dict[str, Any], value: Any, at: str) -> list[str]:
    errors = []
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            errors.append(f"{at}: wrong length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{at}: does not match {schema['pattern']}")
    if isinstance(value, int) and not isinstance(value, bool):
        too_low = value < schema.get("minimum", value) or value <= schema.get("exclusiveMinimum", value - 1)
        if too_low or value > schema.get("maximum", value):
            errors.append(f"{at}: out of range")
    return errors


def example_envelope(version: int) -> dict[str, Any]:
    return {
        "message_id": "m-1",
        "contract": "order.created",
        "version": version,
        "occurred_at": "2026-11-22T10:00:00Z",
        "producer": "storefront",
        "data": copy.deepcopy(ORDER_CREATED.examples[version]),
    }


@pytest.mark.parametrize("version", [1, 2])
def test_each_versions_schema_accepts_its_documented_example(version: int) -> None:
    schema = contract_schema(ORDER_CREATED, version)

    assert schema_errors(schema["properties"]["data"], ORDER_CREATED.examples[version], schema) == []
    assert schema_errors(schema, example_envelope(version), schema) == []


def test_the_schema_checker_used_here_does_reject_what_the_contract_rejects() -> None:
    schema = contract_schema(ORDER_CREATED, 2)
    data = order_v2()
    data["lines"][0]["unit_price_minor"] = 19.99
    data["customer"]["email"] = "nobody"

    errors = schema_errors(schema["properties"]["data"], data, schema, "data")

    assert errors == [
        r"data.customer.email: does not match ^[^@ \t\n\r\f\v]+@[^@ \t\n\r\f\v]+$",
        "data.lines.0.unit_price_minor: not an integer",
    ]


def test_the_schema_pins_the_contract_name_and_version() -> None:
    schema = contract_schema(ORDER_CREATED, 1)

    assert schema["title"] == "order.created v1"
    assert schema["properties"]["contract"]["const"] == "order.created"
    assert schema["properties"]["version"]["const"] == 1
    assert schema_errors(schema, example_envelope(2) | {"version": 1}, schema) != []


def test_the_schema_defaults_to_the_latest_version_and_requires_the_envelope_fields() -> None:
    schema = contract_schema(ORDER_CREATED)

    assert schema["properties"]["version"]["const"] == 2
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"message_id", "contract", "version", "occurred_at", "producer", "data"} <= set(schema["required"])
    assert schema["description"] == ORDER_CREATED.summary


def test_every_reference_in_the_schema_resolves_inside_it() -> None:
    schema = contract_schema(ORDER_CREATED, 2)
    text = repr(schema)

    for name in re.findall(r"#/\$defs/(\w+)", text):
        assert name in schema["$defs"]


def test_asking_for_the_schema_of_an_unknown_version_raises_key_error() -> None:
    with pytest.raises(KeyError, match=r"order\.created has no version 9"):
        contract_schema(ORDER_CREATED, 9)
