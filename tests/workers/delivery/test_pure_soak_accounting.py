"""The chaos soak's delivery accounting, checked on small hand-made records (the soak itself is not run here)."""

from __future__ import annotations

from tests.support.delivery_accounting import out_of_order, refusals_without_a_dead_letter, sent_while_paused


def row(id_: int, ordering_key: str, key: str) -> dict[str, object]:
    return {"id": id_, "ordering_key": ordering_key, "idempotency_key": key}


RECORDED = [
    row(1, "erp:order_id=A", "export:A"),
    row(2, "erp:order_id=B", "export:B"),
    row(3, "erp:order_id=A", "cancel:A"),
    row(4, "erp:order_id=B", "cancel:B"),
]


def test_deliveries_applied_in_their_recorded_order_per_key_are_in_order_across_keys_interleaved() -> None:
    assert out_of_order(RECORDED, ["export:B", "export:A", "cancel:B", "cancel:A"]) == []


def test_a_cancel_applied_before_its_export_is_out_of_order_and_only_its_key_is_named() -> None:
    assert out_of_order(RECORDED, ["cancel:A", "export:A", "export:B", "cancel:B"]) == ["erp:order_id=A"]


def test_a_delivery_that_never_reached_the_system_has_no_place_in_the_order() -> None:
    assert out_of_order(RECORDED, ["cancel:A", "export:B"]) == []


def test_a_refused_delivery_is_accounted_only_by_a_delivery_dead_letter_with_its_key() -> None:
    letters: list[dict[str, object]] = [
        {"stage": "delivery", "headers": {"idempotency_key": "export:A"}},
        {"stage": "handler", "headers": {"idempotency_key": "export:B"}},
        {"stage": "delivery", "headers": '{"idempotency_key": "cancel:B"}'},
    ]
    assert refusals_without_a_dead_letter(["export:A", "export:B", "cancel:B"], letters) == ["export:B"]


def test_a_request_after_the_grace_inside_a_pause_counts_and_one_before_or_after_does_not() -> None:
    assert sent_while_paused([9.0, 10.5, 12.5, 14.0, 20.0], [(10.0, 14.0)], grace=2.0) == [12.5]
