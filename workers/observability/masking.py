"""Masks personal data (emails, names, addresses, phone numbers) before anything is shown or logged.

Every pattern here runs in linear time on any text: none can backtrack over an unbounded run (the
e-mail pattern starts only where a run of address characters starts, and never gives back its local
part), and a text above MAX_MASKED_CHARS is withheld whole instead of read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PERSONAL_KEYS = frozenset(
    {
        "email",
        "name",
        "first_name",
        "last_name",
        "phone",
        "phone_number",
        "line1",
        "line2",
        "street",
        "address",
        "postal_code",
        "zip",
        "city",
    }
)
#: An email: starts only where its run of address characters starts (the look-behind) and takes the run
#: possessively, so a long text without `@` is read once, not once per position (quadratic).
EMAIL = re.compile(r"(?<![^@\s\"'])[^@\s\"']++@[^@\s\"']+\.[A-Za-z]{2,}")
#: Phone numbers in free text: international (+49 30 1234567) or national with a trunk 0 and a
#: separator (030 12345678). Ids, SKUs, UUIDs and timestamps match neither.
PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d|(?<![\w-])\(?0\d{1,4}\)?[\s/]\d[\d\s-]{4,}\d(?![\w-])")
MASK = "***"
#: The names business keys go by (the contracts' keys, and the `*_id` fields `dlq list --key` searches).
KEY_LABEL = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*_id|sku|location")
#: A text longer than this is not read at all: it is shown as MASK and its length. No event body is this
#: long (the envelope's limit is 1 MiB); a dead letter refused for its size still shows its other fields.
MAX_MASKED_CHARS = 4 * 1_048_576


def mask(value: Any) -> Any:
    """A copy of a JSON-like value with personal fields replaced and emails or phone numbers blanked in text."""
    if isinstance(value, dict):
        if is_key_label(value):
            return {"name": value["name"], "value": mask(value["value"])}
        return {k: MASK if k.lower() in PERSONAL_KEYS and v is not None else mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def is_key_label(value: Mapping[Any, Any]) -> bool:
    """A `{"name": "order_id", "value": …}` pair: its `name` labels a business key, it does not name a person.

    Decided by what the label is, a key name (`sku`, `location`, or one ending in `_id`), not by the field
    being called `name`: a `{"name": "Ana Müller", "value": …}` is still masked.
    """
    if set(value) != {"name", "value"}:
        return False
    label = value["name"]
    return isinstance(label, str) and bool(KEY_LABEL.fullmatch(label))


def mask_text(text: str) -> str:
    """`text` with emails and phone numbers blanked, in time linear in its length."""
    if len(text) > MAX_MASKED_CHARS:
        return withheld(text)
    return PHONE.sub(MASK, EMAIL.sub(MASK, text))


def withheld(text: str) -> str:
    """What a text too long to be read for personal data is shown as."""
    return f"{MASK} ({len(text):,} characters, above the {MAX_MASKED_CHARS:,} a masking pass reads)"
