"""Publishers get a clear `decode` rejection for any body that is not a strict envelope, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.envelope import MAX_BODY_BYTES, decode_envelope
from contracts.errors import UndecodableMessage


def envelope_document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "message_id": "7f1c2d3e",
        "contract": "order.created",
        "version": 2,
        "occurred_at": "2026-11-22T10:00:00Z",
        "producer": "storefront",
        "correlation_id": "corr-1",
        "data": {"order_id": "ORD-1"},
    }
    document.update(overrides)
    return document


def as_body(document: Any) -> bytes:
    return json.dumps(document).encode("utf-8")


def rejection_of(body: bytes) -> UndecodableMessage:
    with pytest.raises(UndecodableMessage) as caught:
        decode_envelope(body)
    return caught.value


def test_a_valid_envelope_decodes_into_its_fields() -> None:
    envelope = decode_envelope(as_body(envelope_document()))

    assert envelope.message_id == "7f1c2d3e"
    assert envelope.contract == "order.created"
    assert envelope.version == 2
    assert envelope.occurred_at == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert envelope.producer == "storefront"
    assert envelope.correlation_id == "corr-1"
    assert envelope.data == {"order_id": "ORD-1"}


def test_the_correlation_id_is_optional() -> None:
    document = envelope_document()
    del document["correlation_id"]

    assert decode_envelope(as_body(document)).correlation_id is None


def test_unknown_envelope_fields_are_ignored_so_publishers_can_add_metadata() -> None:
    envelope = decode_envelope(as_body(envelope_document(trace="abc")))

    assert envelope.message_id == "7f1c2d3e"


def test_an_envelope_survives_its_own_serialisation() -> None:
    envelope = decode_envelope(as_body(envelope_document()))

    assert decode_envelope(envelope.to_json()) == envelope


def test_a_decode_rejection_has_the_decode_stage() -> None:
    assert rejection_of(b"not json").stage == "decode"


def test_a_body_that_is_not_utf8_is_rejected_with_the_offending_byte() -> None:
    body = b'{"message_id": "' + b"\xff\xfe" + b'"}'

    offset = body.index(b"\xff")

    rejection = rejection_of(body)

    assert "not UTF-8" in rejection.reason
    assert f"byte {offset}" in rejection.reason


def test_a_truncated_json_body_is_rejected_as_not_json() -> None:
    body = as_body(envelope_document())[:-10]

    assert "not JSON" in rejection_of(body).reason


@pytest.mark.parametrize(("document", "kind"), [([1, 2, 3], "list"), (42, "int"), ("text", "str"), (None, "NoneType")])
def test_json_that_is_not_an_object_is_rejected_naming_what_it_is(document: Any, kind: str) -> None:
    rejection = rejection_of(as_body(document))

    assert "not an envelope object" in rejection.reason
    assert kind in rejection.reason


def test_deeply_nested_json_is_rejected_instead_of_exhausting_the_stack() -> None:
    depth = 100_000
    body = b"[" * depth + b"]" * depth

    rejection = rejection_of(body)

    assert "nested too deeply" in rejection.reason


def test_deeply_nested_data_inside_an_envelope_is_rejected_too() -> None:
    depth = 100_000
    prefix = as_body(envelope_document(data={}))[: -len(b"{}}")]
    body = prefix + b'{"x": ' + b"[" * depth + b"]" * depth + b"}}"

    assert "nested too deeply" in rejection_of(body).reason


def test_a_body_over_the_size_limit_is_rejected_before_it_is_parsed() -> None:
    body = b"{" + b" " * MAX_BODY_BYTES + b"}"

    rejection = rejection_of(body)

    assert str(MAX_BODY_BYTES) in rejection.reason
    assert str(len(body)) in rejection.reason


def test_a_body_exactly_at_the_size_limit_is_still_parsed() -> None:
    compact = as_body(envelope_document())
    body = compact[:-1] + b" " * (MAX_BODY_BYTES - len(compact)) + b"}"

    assert len(body) == MAX_BODY_BYTES
    assert decode_envelope(body).message_id == "7f1c2d3e"


def test_missing_fields_are_all_named_in_the_rejection() -> None:
    document = envelope_document()
    del document["producer"]
    del document["data"]

    rejection = rejection_of(as_body(document))

    assert rejection.field_paths == ("producer", "data")
    assert "producer" in rejection.reason
    assert "data" in rejection.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", "2"),
        ("version", 2.0),
        ("version", True),
        ("version", 0),
        ("message_id", 17),
        ("message_id", ""),
        ("contract", None),
        ("producer", ["storefront"]),
        ("data", [{"order_id": "ORD-1"}]),
        ("occurred_at", "yesterday"),
    ],
)
def test_a_field_of_the_wrong_type_is_rejected_strictly_with_its_path(field: str, value: Any) -> None:
    rejection = rejection_of(as_body(envelope_document(**{field: value})))

    assert rejection.field_paths == (field,)
    assert rejection.reason.startswith(f"not an envelope: {field}:")


def test_an_occurred_at_without_a_timezone_is_rejected() -> None:
    rejection = rejection_of(as_body(envelope_document(occurred_at="2026-11-22T10:00:00")))

    assert rejection.field_paths == ("occurred_at",)
    assert "timezone" in rejection.reason


def test_an_occurred_at_with_an_offset_keeps_the_instant() -> None:
    envelope = decode_envelope(as_body(envelope_document(occurred_at="2026-11-22T11:00:00+01:00")))

    assert envelope.occurred_at == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_a_decoded_envelope_is_immutable() -> None:
    envelope = decode_envelope(as_body(envelope_document()))

    with pytest.raises(ValueError, match="frozen"):
        envelope.version = 3  # type: ignore[misc]
