"""The base of every contract model: strict, frozen, and refusing fields it does not know."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ContractModel(BaseModel):
    """Unknown fields are rejected, so a typo upstream is a contract failure, not silently ignored data."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: The one rule on lines that JSON Schema cannot state (`uniqueItems` compares whole items, not one field).
UNIQUE_LINE_IDS = (
    "Each element's `line_id` is unique within the message. JSON Schema cannot express this rule; "
    "the fleet checks it on arrival (stage `contract`)."
)


def unique(values: list[str], what: str) -> None:
    """Raise if `values` repeats itself (e.g. two lines with one line_id)."""
    if len(values) != len(set(values)):
        raise ValueError(f"{what} values must be unique")
