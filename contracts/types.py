"""Field types shared by contracts: identifiers, SKUs, quantities, money in minor units, timestamps."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, Field, StringConstraints

#: What an identifier may contain: visible ASCII (letters, digits, punctuation), no space, no control
#: character, nothing beyond ASCII. Such a value is a valid HTTP header value as it is, and it leaves
#: a URL path segment only percent-encoded.
ID_PATTERN = r"^[!-~]+$"
ID_RULE = (
    "visible ASCII only (letters, digits and punctuation, U+0021 to U+007E): no space, no control "
    "character, no character beyond ASCII"
)
#: SKUs and locations also compose dedup keys (`sku@location#sequence`, `sku#revision`): no `@` or `#`.
CODE_PATTERN = r'^[!"$-?A-~]+$'
CODE_RULE = f"{ID_RULE}, and neither `@` nor `#` (they separate the parts of a dedup key)"


# Surrounding whitespace is still removed before the checks, as it always was, so that no sender that
# relied on it breaks; the schema leaves it out, so no value the schema accepts is changed by it.
Id = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=64, pattern=ID_PATTERN),
    Field(description=f"1 to 64 characters, {ID_RULE}."),
]
Sku = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=64, pattern=CODE_PATTERN),
    Field(description=f"1 to 64 characters, {CODE_RULE}."),
]
#: A warehouse, store or returns centre, as the warehouse system names it.
Location = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=64, pattern=CODE_PATTERN),
    Field(description=f"1 to 64 characters, {CODE_RULE}."),
]
Text = Annotated[str, StringConstraints(strict=True, max_length=500)]
#: Explicit classes, not `\s`: Python's, Rust's and ECMAScript's `\s` differ (U+001C, U+0085, U+FEFF).
Email = Annotated[str, StringConstraints(strict=True, max_length=254, pattern=r"^[^@ \t\n\r\f\v]+@[^@ \t\n\r\f\v]+$")]
CountryCode = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{2}$")]
#: ISO 4217 alphabetic code.
Currency = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{3}$")]
#: Money is an integer count of the currency's minor unit (cents, pence, yen): never a float.
MinorUnits = Annotated[int, Field(strict=True, ge=0, le=10**12)]
Quantity = Annotated[int, Field(strict=True, gt=0, le=100_000)]
#: A source system's per-key sequence number: a higher number is newer state.
SequenceNumber = Annotated[int, Field(strict=True, ge=1, le=2**62)]
#: Money that must be positive (a capture, a refund, an authorization).
PositiveMinorUnits = Annotated[int, Field(strict=True, gt=0, le=10**12)]

_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339_text(value: Any) -> Any:
    """Only an RFC 3339 string is a timestamp: not `Date.now()`'s milliseconds, not a string of digits."""
    if isinstance(value, datetime):  # built in Python (an upcaster, a test): already a timestamp
        return value
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError("must be an RFC 3339 date-time string with a UTC offset, e.g. 2026-11-24T15:00:00Z")
    return value


#: A point in time, as the schema's `format: date-time` says: an RFC 3339 string with an offset.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
