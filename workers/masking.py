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
PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")
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
