"""Each kind of failure gets the decision that can work: retry, repair, suppress or escalate."""

from __future__ import annotations

import pytest

from workers.deadletters.decision import ESCALATE, REPAIR, RETRY, SUPPRESS, refusal, suggest


@pytest.mark.parametrize(
    ("stage", "error_type", "message", "decision"),
    [
        ("delivery", "PermanentError", "erp POST /orders answered 400: bad sku", ESCALATE),
        ("handler", "PermanentError", "erp POST /orders answered 422", ESCALATE),
        ("delivery", "DeliveryBudgetSpent", "erp POST /orders answered 503 until its budget ran out", RETRY),
        ("contract", "ContractViolation", "order.created v2 is invalid: data.lines.0.quantity", REPAIR),
        ("decode", "DecodeError", "not JSON", REPAIR),
        ("expired", "EventExpired", "event occurred 200 h ago", SUPPRESS),
        ("handler", "RetryBudgetExhausted", "retry budget exhausted after 6 attempts; final error: order …", RETRY),
        ("handler", "ParkedTooLong", "parked behind dead letter #4 for more than 24 h", RETRY),
        ("handler", "PermanentError", "capture of 6000 exceeds the authorized 5000", ESCALATE),
    ],
)
def test_the_suggested_decision_follows_what_a_replay_would_change(
    stage: str, error_type: str, message: str, decision: str
) -> None:
    assert suggest(stage, error_type, message, "abc").decision == decision


def test_a_permanent_downstream_refusal_names_the_system_and_offers_a_canary_not_a_blind_replay() -> None:
    advice = suggest("delivery", "PermanentError", "erp POST /orders answered 400", "f00d")

    assert "erp" in advice.why and "fails again unless erp changed" in advice.why
    assert "--canary 5" in advice.next and "--group f00d" in advice.next


def test_a_contract_group_suggests_the_producers_resend_or_repair_not_replay() -> None:
    advice = suggest("contract", "ContractViolation", "data.lines.0.quantity must be > 0", "beef")

    assert "dlq repair" in advice.next and "resend" in advice.next
    assert "dlq replay" not in advice.next


@pytest.mark.parametrize(
    ("message", "system", "permanent"),
    [
        ("erp POST /orders answered 400: no", "erp", True),
        ("retry budget exhausted after 3 attempts; final error: channels POST /prices answered 503", "channels", False),
        ("notify POST /mail answered 429", "notify", False),
        ("payments POST /refunds answered 409", "payments", False),
    ],
)
def test_the_downstream_answer_is_read_from_the_final_error(message: str, system: str, permanent: bool) -> None:
    answer = refusal(message)

    assert answer is not None and (answer.system, answer.permanent) == (system, permanent)


def test_an_error_without_a_downstream_answer_has_none() -> None:
    assert refusal("order ORD-1 is not known yet") is None
    assert refusal(None) is None
