"""Which contracts exist, in which versions, how old versions upcast, and each one's dedup key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from contracts.envelope import Envelope
from contracts.errors import ContractViolation
from contracts.validation import describe_errors

Upcaster = Callable[[Any], BaseModel]


@dataclass(frozen=True)
class Contract:
    """One contract name (e.g. `order.created`): its versions, upcasters and keys.

    `upcasters[n]` turns a version-n model into a version-(n+1) model, so any accepted version
    reaches the latest one, which is the only version a handler sees.
    """

    name: str
    flow: str
    versions: Mapping[int, type[BaseModel]]
    upcasters: Mapping[int, Upcaster]
    dedup_key: Callable[[Any], str]
    business_keys: Callable[[Any], dict[str, str]]
    summary: str = ""
    examples: Mapping[int, dict[str, Any]] = field(default_factory=dict)
    #: The earlier contracts an event of this one needs applied first, each with the business key they
    #: share (`{"order.created": "order_id"}`): while such an event is dead-lettered, this one is parked.
    depends_on: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [v for v in self.versions if v != self.latest_version and v not in self.upcasters]
        if missing:
            raise ValueError(f"{self.name}: versions {missing} have no upcaster to the next version")

    @property
    def latest_version(self) -> int:
        return max(self.versions)

    @property
    def latest_model(self) -> type[BaseModel]:
        return self.versions[self.latest_version]

    def parse(self, version: int, data: Mapping[str, Any]) -> BaseModel:
        """Validate `data` against `version`, then upcast it to the latest version."""
        model = self.versions.get(version)
        if model is None:
            known = ", ".join(str(v) for v in sorted(self.versions))
            raise ContractViolation(f"{self.name} has no version {version} (known: {known})")
        try:
            event = model.model_validate(data)
        except ValidationError as error:
            reason, paths = describe_errors(error, prefix="data")
            raise ContractViolation(f"{self.name} v{version} is invalid: {reason}", field_paths=paths) from None
        for step in range(version, self.latest_version):
            event = self.upcasters[step](event)
        return event


@dataclass(frozen=True)
class ParsedEvent:
    """An envelope whose data passed its contract, upcast to the latest version."""

    envelope: Envelope
    contract: Contract
    event: BaseModel
    dedup_key: str
    business_keys: dict[str, str]


class ContractRegistry:
    """All contracts the fleet accepts, looked up by name."""

    def __init__(self, contracts: Iterable[Contract]) -> None:
        self._contracts: dict[str, Contract] = {}
        for contract in contracts:
            if contract.name in self._contracts:
                raise ValueError(f"contract {contract.name} registered twice")
            self._contracts[contract.name] = contract

    def __iter__(self) -> Any:
        return iter(sorted(self._contracts.values(), key=lambda c: c.name))

    def get(self, name: str) -> Contract:
        contract = self._contracts.get(name)
        if contract is None:
            raise ContractViolation(f"unknown contract {name!r}")
        return contract

    def for_flow(self, flow: str) -> list[Contract]:
        return [c for c in self if c.flow == flow]

    def parse(self, envelope: Envelope, *, flow: str) -> ParsedEvent:
        """Resolve, validate and upcast an envelope's data; raise ContractViolation if it cannot be."""
        contract = self.get(envelope.contract)
        if contract.flow != flow:
            raise ContractViolation(f"contract {contract.name!r} belongs to flow {contract.flow!r}, not {flow!r}")
        event = contract.parse(envelope.version, envelope.data)
        return ParsedEvent(
            envelope=envelope,
            contract=contract,
            event=event,
            dedup_key=contract.dedup_key(event),
            business_keys=contract.business_keys(event),
        )
