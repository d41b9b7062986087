"""Field types shared by contracts: identifiers, SKUs, quantities, money in minor units."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

Id = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=64)]
Sku = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(strict=True, max_length=500)]
Email = Annotated[str, StringConstraints(strict=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
CountryCode = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{2}$")]
#: ISO 4217 alphabetic code.
Currency = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{3}$")]
#: Money is an integer count of the currency's minor unit (cents, pence, yen): never a float.
MinorUnits = Annotated[int, Field(strict=True, ge=0, le=10**12)]
Quantity = Annotated[int, Field(strict=True, gt=0, le=100_000)]
#: A warehouse, store or returns centre, as the warehouse system names it.
Location = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=64)]
#: A source system's per-key sequence number: a higher number is newer state.
SequenceNumber = Annotated[int, Field(strict=True, ge=1, le=2**62)]
#: Money that must be positive (a capture, a refund, an authorization).
PositiveMinorUnits = Annotated[int, Field(strict=True, gt=0, le=10**12)]
