"""Personal data never reaches logs, Sentry or the CLI unmasked, while the ids on-call needs stay readable."""

from __future__ import annotations

import pytest

from workers.observability.masking import MASK, mask, mask_text


def test_personal_fields_are_replaced_wherever_they_are_nested() -> None:
    order = {
        "customer": {"customer_id": "C-77", "email": "ana@example.com", "name": "Ana Müller"},
        "ship_to": {
            "name": "Ana Müller",
            "line1": "Hauptstraße 5",
            "line2": "Hinterhaus",
            "city": "Köln",
            "postal_code": "50667",
            "country": "DE",
        },
    }

    masked = mask(order)

    assert masked == {
        "customer": {"customer_id": "C-77", "email": MASK, "name": MASK},
        "ship_to": {
            "name": MASK,
            "line1": MASK,
            "line2": MASK,
            "city": MASK,
            "postal_code": MASK,
            "country": "DE",
        },
    }


def test_personal_field_names_are_matched_case_insensitively() -> None:
    assert mask({"Email": "ana@example.com", "PHONE": "12", "First_Name": "Ana"}) == {
        "Email": MASK,
        "PHONE": MASK,
        "First_Name": MASK,
    }


def test_a_whole_address_object_is_hidden_under_its_key() -> None:
    assert mask({"address": {"street": "Hauptstraße 5", "country": "DE"}}) == {"address": MASK}


def test_an_absent_personal_field_stays_visibly_absent() -> None:
    assert mask({"name": None, "line2": None}) == {"name": None, "line2": None}


def test_emails_and_phone_numbers_inside_free_text_are_blanked() -> None:
    note = "Customer ana.muller+shop@example.co.uk called from +49 (30) 1234-5678 about ORD-1001"

    assert mask_text(note) == f"Customer {MASK} called from {MASK} about ORD-1001"


def test_free_text_is_masked_inside_lists_and_any_field() -> None:
    masked = mask({"errors": ["reply to bo@example.com", "ok"], "reason": "tel 030 12345678"})

    assert masked == {"errors": [f"reply to {MASK}", "ok"], "reason": f"tel {MASK}"}


def test_an_email_inside_an_error_message_quoted_in_json_is_masked_without_its_quotes() -> None:
    assert mask_text('customer.email: "ana@example.com" is taken') == f'customer.email: "{MASK}" is taken'


def test_ids_skus_amounts_and_flags_are_left_alone() -> None:
    order = {
        "order_id": "ORD-1001",
        "customer_id": "C-77",
        "line_id": "1",
        "sku": "TEE-RED-M",
        "quantity": 2,
        "unit_price_minor": 1999,
        "total_minor": 12_345_678_901,
        "tax_exempt": False,
        "channel": "marketplace:amazon_de",
        "currency": "EUR",
    }

    assert mask(order) == order


def test_masking_returns_a_copy_and_leaves_the_original_untouched() -> None:
    original = {"customer": {"email": "ana@example.com"}}

    mask(original)

    assert original == {"customer": {"email": "ana@example.com"}}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sku", "4006381333931"),
        ("order_id", "100000123"),
        ("message_id", "123e4567-e89b-12d3-a456-426614174000"),
        ("occurred_at", "2026-11-22T10:00:00Z"),
    ],
)
def test_numeric_ids_skus_and_timestamps_are_not_mistaken_for_phone_numbers(field: str, value: str) -> None:
    assert mask({field: value}) == {field: value}


def test_a_business_keys_label_stays_readable_while_a_person_named_name_is_masked() -> None:
    keys = [{"name": "order_id", "value": "ORD-1"}, {"name": "sku", "value": "TEE ana@example.com"}]
    people = [{"name": "Ana Müller", "value": "gold customer"}, {"name": "ana_mueller", "value": 3}]

    assert mask(keys) == [{"name": "order_id", "value": "ORD-1"}, {"name": "sku", "value": f"TEE {MASK}"}]
    assert mask(people) == [{"name": MASK, "value": "gold customer"}, {"name": MASK, "value": 3}]
