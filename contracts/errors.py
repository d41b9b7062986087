"""Why a body could not become a valid event: the `decode` and `contract` failure stages."""

from __future__ import annotations


class RejectedMessage(Exception):
    """A message that can never succeed as sent; it is dead-lettered on the first attempt."""

    stage: str = "contract"

    def __init__(self, reason: str, *, field_paths: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field_paths = field_paths


class UndecodableMessage(RejectedMessage):
    """The body is not UTF-8 JSON, or not an envelope."""

    stage = "decode"


class ContractViolation(RejectedMessage):
    """Unknown contract or version, or data that fails the contract's validation."""

    stage = "contract"
