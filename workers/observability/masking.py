"""Masks personal data (emails, names, addresses, phone numbers) before anything is shown or logged."""

from __future__ import annotations

import re
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
EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[A-Za-z]{2,}")
#: Phone numbers in free text: international (+49 30 1234567) or national with a trunk 0 and a
#: separator (030 12345678). Ids, SKUs, UUIDs and timestamps match neither.
PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d|(?<![\w-])\(?0\d{1,4}\)?[\s/]\d[\d\s-]{4,}\d(?![\w-])")
MASK = "***"


def mask(value: Any) -> Any:
    """A copy of a JSON-like value with personal fields replaced and emails or phone numbers blanked in text."""
    if isinstance(value, dict):
        return {k: MASK if k.lower() in PERSONAL_KEYS and v is not None else mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_text(text: str) -> str:
    return PHONE.sub(MASK, EMAIL.sub(MASK, text))
