"""Every failure gets the right stage and retry verdict, and the same fault always the same fingerprint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from contracts.envelope import decode_envelope
from contracts.errors import ContractViolation, RejectedMessage, UndecodableMessage
from contracts.orders import ORDER_CREATED, OrderCreatedV2
from contracts.schema import contract_schema
from handlers.errors import PermanentError, Throttled, TransientError
from handlers.orders import place_order
from tests.support.fakes import InMemoryOrderBook, InMemoryStockBook
from workers.failures import MAX_ERROR_MESSAGE, TRACEBACK_LIMIT, EventExpired, Failure, classify, fingerprint


def caught(action: Any, *args: Any) -> BaseException:
    try:
        action(*args)
    except Exception as error:
        return error
    raise AssertionError(f"{action!r} did not raise")


def raise_(error: BaseException) -> None:
    raise error


class _RefusingErp:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def post(self, path: str, payload: Mapping[str, Any], *, idempotency_key: str) -> None:
        raise self.error


def erp_failure(error: Exception, order_id: str = "ORD-1") -> BaseException:
    order = ORDER_CREATED.parse(2, {**ORDER_CREATED.examples[2], "order_id": order_id})
    assert isinstance(order, OrderCreatedV2)
    return caught(
        lambda: place_order(
            order,
            orders=InMemoryOrderBook(),
            stock=InMemoryStockBook(),
            erp=_RefusingErp(error),
            channels=_RefusingErp(error),
        )
    )


def contract_failure(quantity: object, line: int = 0) -> BaseException:
    data = {**ORDER_CREATED.examples[2]}
    lines = [dict(data["lines"][0], line_id=str(n)) for n in range(line + 1)]
    lines[line]["quantity"] = quantity
    return caught(ORDER_CREATED.parse, 2, {**data, "lines": lines})


@pytest.mark.parametrize(
    ("error", "stage"),
    [(UndecodableMessage("not JSON"), "decode"), (ContractViolation("unknown contract 'x'"), "contract")],
)
def test_a_rejected_message_fails_at_its_own_stage_and_is_never_retried(error: RejectedMessage, stage: str) -> None:
    failure = classify(error)

    assert failure.stage == stage
    assert failure.transient is False
    assert failure.retry_after is None
    assert failure.error_type == type(error).__name__


def test_a_contract_violation_keeps_its_field_paths() -> None:
    failure = classify(contract_failure(0))

    assert failure.stage == "contract"
    assert failure.field_paths == ("data.lines.0.quantity",)
    assert "data.lines.0.quantity" in failure.message


def test_an_expired_event_fails_at_the_expired_stage_and_is_not_retried() -> None:
    failure = classify(EventExpired("occurred 3 days ago"))

    assert (failure.stage, failure.transient, failure.error_type) == ("expired", False, "EventExpired")


def test_a_permanent_error_is_a_handler_failure_that_is_not_retried() -> None:
    failure = classify(PermanentError("ERP answered 422"))

    assert (failure.stage, failure.transient) == ("handler", False)
    assert failure.message == "ERP answered 422"


def test_a_transient_error_is_retried_and_keeps_the_retry_after_it_asked_for() -> None:
    failure = classify(TransientError("ERP answered 429", retry_after=12.5))

    assert (failure.stage, failure.transient) == ("handler", True)
    assert failure.retry_after == 12.5


def test_an_unforeseen_exception_counts_as_a_transient_handler_failure() -> None:
    failure = classify(KeyError("sku"))

    assert (failure.stage, failure.transient, failure.error_type) == ("handler", True, "KeyError")
    assert failure.retry_after is None


@pytest.mark.parametrize(
    "error",
    [
        caught(lambda: "ORD-3 Ä€".encode("ascii")),
        caught(lambda: b"\xff".decode("utf-8")),
        caught(OrderCreatedV2.model_validate, {}),
        RecursionError("maximum recursion depth exceeded"),
    ],
    ids=["encode", "decode", "validation", "recursion"],
)
def test_a_deterministic_error_is_a_permanent_handler_failure_dead_lettered_at_once(error: BaseException) -> None:
    """The same input fails the same way on every attempt: retrying it would only blame the downstream."""
    failure = classify(error)

    assert (failure.stage, failure.transient) == ("handler", False)
    assert "not retried" in failure.message


def test_an_error_without_a_message_is_described_by_its_type() -> None:
    assert classify(RuntimeError()).message == "RuntimeError"


def test_a_huge_error_message_is_cut_to_the_archive_limit() -> None:
    assert len(classify(PermanentError("x" * 10 * MAX_ERROR_MESSAGE)).message) == MAX_ERROR_MESSAGE


def test_the_traceback_is_kept_but_trimmed_to_its_last_frames() -> None:
    def recurse(depth: int) -> None:
        if depth == 0:
            raise PermanentError("at the bottom")
        recurse(depth - 1)

    failure = classify(caught(recurse, 40))

    assert "PermanentError: at the bottom" in failure.traceback
    assert "in recurse" in failure.traceback
    assert "in caught" not in failure.traceback, f"only the last {TRACEBACK_LIMIT} frames are kept"


def test_the_fingerprint_ignores_the_values_in_the_error() -> None:
    first = classify(erp_failure(PermanentError("ERP rejected ORD-1: bad VAT id"), "ORD-1"))
    second = classify(erp_failure(PermanentError("ERP rejected ORD-2: missing zip"), "ORD-2"))

    assert first.fingerprint == second.fingerprint
    assert first.message != second.message


def test_the_fingerprint_ignores_which_line_of_a_function_raised() -> None:
    not_utf8 = classify(caught(decode_envelope, b"\xff"))
    not_json = classify(caught(decode_envelope, b"{"))

    assert not_utf8.message != not_json.message
    assert not_utf8.fingerprint == not_json.fingerprint


def test_the_fingerprint_ignores_the_index_of_the_offending_list_item() -> None:
    first_line = classify(contract_failure(0, line=0))
    fourth_line = classify(contract_failure(-5, line=3))

    assert first_line.field_paths == ("data.lines.0.quantity",)
    assert fourth_line.field_paths == ("data.lines.3.quantity",)
    assert first_line.fingerprint == fourth_line.fingerprint


def test_data_lines_3_and_data_lines_0_fingerprint_the_same() -> None:
    assert fingerprint("contract", "ContractViolation", "", ("data.lines.3.quantity",)) == fingerprint(
        "contract", "ContractViolation", "", ("data.lines.0.quantity",)
    )


def test_the_order_of_field_paths_does_not_change_the_fingerprint() -> None:
    assert fingerprint("contract", "ContractViolation", "", ("data.a", "data.b")) == fingerprint(
        "contract", "ContractViolation", "", ("data.b", "data.a")
    )


def test_different_field_paths_fingerprint_differently() -> None:
    assert (
        classify(contract_failure(0)).fingerprint
        != classify(caught(ORDER_CREATED.parse, 2, {**ORDER_CREATED.examples[2], "currency": "euro"})).fingerprint
    )


def test_the_same_error_type_at_another_stage_fingerprints_differently() -> None:
    decode = classify(UndecodableMessage("bad", field_paths=("data",)))
    contract = classify(ContractViolation("bad", field_paths=("data",)))

    assert decode.fingerprint != contract.fingerprint
    assert fingerprint("decode", "E", "", ()) != fingerprint("contract", "E", "", ())


def test_another_error_type_from_the_same_place_fingerprints_differently() -> None:
    transient = classify(erp_failure(TransientError("ERP answered 503")))
    permanent = classify(erp_failure(PermanentError("ERP answered 503")))

    assert transient.fingerprint != permanent.fingerprint


def test_the_same_error_type_from_another_place_in_the_application_fingerprints_differently() -> None:
    from_schema_export = classify(caught(contract_schema, ORDER_CREATED, 9))
    from_elsewhere = classify(caught(raise_, KeyError("order.created has no version 9")))

    assert from_schema_export.error_type == from_elsewhere.error_type == "KeyError"
    assert from_schema_export.fingerprint != from_elsewhere.fingerprint


def test_a_fingerprint_is_a_short_stable_hex_id() -> None:
    value = fingerprint("handler", "KeyError", "workers.runtime.pipeline:run", ())

    assert value == fingerprint("handler", "KeyError", "workers.runtime.pipeline:run", ())
    assert len(value) == 16
    assert int(value, 16) >= 0


def test_an_exhausted_failure_says_how_many_attempts_and_keeps_the_final_error() -> None:
    last = classify(TransientError("ERP answered 503", retry_after=5.0))

    final = last.exhausted(7)

    assert final.message == "retry budget exhausted after 7 attempts; final error: ERP answered 503"
    assert final.transient is False
    assert final.stage == last.stage
    assert final.error_type == last.error_type
    assert final.fingerprint == last.fingerprint


def test_a_failure_is_immutable_so_exhausting_it_leaves_the_original_alone() -> None:
    last = classify(TransientError("timeout"))

    last.exhausted(3)

    assert last.transient is True
    assert last.message == "timeout"
    assert isinstance(last, Failure)


def test_a_throttled_error_is_a_transient_failure_that_knows_who_throttled() -> None:
    failure = classify(Throttled("channels POST /prices answered 429", system="channels", retry_after=3.0))

    assert (failure.stage, failure.transient, failure.error_type) == ("handler", True, "Throttled")
    assert (failure.throttled, failure.throttled_by, failure.retry_after) == (True, "channels", 3.0)


@pytest.mark.parametrize("error", [TransientError("ERP answered 503"), KeyError("sku"), PermanentError("422")])
def test_no_other_failure_counts_as_throttled(error: Exception) -> None:
    assert classify(error).throttled is False


def test_a_failure_throttled_too_often_says_how_often_and_by_whom_and_is_final() -> None:
    last = classify(Throttled("erp POST /orders answered 429", system="erp", retry_after=1.0))

    final = last.throttled_too_often(31)

    assert final.message == "throttled 31 times by erp; final error: erp POST /orders answered 429"
    assert final.transient is False
    assert (final.error_type, final.fingerprint) == (last.error_type, last.fingerprint)
