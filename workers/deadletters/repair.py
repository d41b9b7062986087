"""Edit-and-replay: a JSON Patch on a dead letter's `data`, checked against its contract before anything is sent.

Why it is built this way:
- The patch is RFC 6902 JSON Patch, all six operations, applied by the `jsonpatch` library to a copy
  of `data`, one operation at a time so that a refusal names the operation that failed.
- Only `data` is patched; every other envelope field (message_id, contract, version, occurred_at,
  producer, correlation_id) is copied from the original document, so the event's identity cannot be
  edited by construction.
- The edited envelope goes through the pipeline's own parse (contract of the version it names, then
  today's upcasters) and must pass, or the repair is refused and nothing is published.
- The dedup key must not change: it is compared with the archived key or, for a record whose data
  never validated, with the key read leniently from the original data (each field validated on its
  own). When the original key cannot be read at all, the repair is refused: it could set a key.
- The edited copy is sent as a replay of the original (same claim, same mark), and its body is kept
  on the replay row, so `dlq show` links the original, the edit, and what became of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import jsonpatch
import jsonpointer
from pydantic import TypeAdapter

from contracts.envelope import decode_envelope
from contracts.errors import RejectedMessage
from contracts.registry import Contract, ContractRegistry


class PatchError(ValueError):
    """The patch is malformed, or one of its operations cannot apply to this document."""


class RepairRefused(Exception):
    """The edit cannot be sent; `reason` says why and `field_paths` where, when the contract refused it."""

    def __init__(self, reason: str, field_paths: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field_paths = field_paths


@dataclass(frozen=True)
class Repaired:
    """The edited envelope, ready to publish, and what it was checked to be."""

    body: bytes
    data: dict[str, Any]
    contract: str
    version: int
    dedup_key: str


def repair(record: Mapping[str, Any], patch: Any, registry: ContractRegistry) -> Repaired:
    """Apply `patch` to the record's `data` and check the result; RepairRefused when it may not be sent."""
    body = bytes(record["body"])
    try:
        document = json.loads(body)
        envelope = decode_envelope(body)
    except (ValueError, RejectedMessage):
        raise RepairRefused(
            "the body is not a readable envelope, so it has no `data` to patch; only a body that decodes can be "
            "repaired (ask the producer to resend it)"
        ) from None
    contract = _contract(registry, envelope.contract, str(record["flow"]))
    try:
        data = apply_patch(envelope.data, patch)
    except PatchError as error:
        raise RepairRefused(f"the patch does not apply: {error}") from None
    if not isinstance(data, dict):
        raise RepairRefused("the patched data is not a JSON object")
    try:
        parsed = registry.parse(envelope.model_copy(update={"data": data}), flow=str(record["flow"]))
    except RejectedMessage as error:
        raise RepairRefused(f"the edited data breaks the contract: {error.reason}", tuple(error.field_paths)) from None
    original_key = record.get("dedup_key") or lenient_dedup_key(contract, envelope.version, envelope.data)
    if original_key is None:
        raise RepairRefused(
            "the original's dedup key cannot be read from its data, so this edit could set one; a repair may not "
            "change the dedup key (ask the producer to resend the event)"
        )
    if parsed.dedup_key != original_key:
        raise RepairRefused(
            f"the edit changes the dedup key from {original_key!r} to {parsed.dedup_key!r}; the dedup key cannot "
            "be edited"
        )
    repaired = dict(document) | {"data": data}
    new_body = json.dumps(repaired, ensure_ascii=False).encode("utf-8")
    again = decode_envelope(new_body)
    identity = (again.message_id, again.contract, again.version, again.occurred_at)
    assert identity == (envelope.message_id, envelope.contract, envelope.version, envelope.occurred_at)
    return Repaired(new_body, data, envelope.contract, envelope.version, parsed.dedup_key)


def apply_patch(document: Any, patch: Any) -> Any:
    """`document` with every operation of the JSON Patch applied in order (a copy), or PatchError naming the
    first operation that does not apply. The input is never changed."""
    if not isinstance(patch, list):
        raise PatchError("a JSON Patch is a JSON array of operations")
    result = document
    for number, operation in enumerate(patch, start=1):
        where = f"operation {number}"
        if isinstance(operation, dict):
            where += f" ({operation.get('op')} {operation.get('path') or '/'})"
        try:
            result = jsonpatch.JsonPatch([operation]).apply(result)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as error:
            raise PatchError(f"{where}: {error}") from None
    return result


def _contract(registry: ContractRegistry, name: str, flow: str) -> Contract:
    try:
        contract = registry.get(name)
    except RejectedMessage as error:
        raise RepairRefused(f"{error.reason}: there is no contract to check the edit against") from None
    if contract.flow != flow:
        raise RepairRefused(f"contract {name!r} belongs to flow {contract.flow!r}, not {flow!r}")
    return contract


def lenient_dedup_key(contract: Contract, version: int, data: Mapping[str, Any]) -> str | None:
    """The dedup key of data that fails its contract, read from the fields that are valid on their own.

    An old version is upcast first; when an upcaster needs a broken field, the key is read from the old
    version's own fields of the same name. That errs on the safe side: a key read wrongly differs from
    the edit's, and the repair is refused. None when the key's own fields are missing or invalid.
    """
    model = contract.versions.get(version)
    if model is None:
        return None
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in data:
            continue
        annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        try:
            fields[name] = TypeAdapter(annotation).validate_python(data[key])
        except Exception:  # noqa: S112  # an invalid field is left out; the key may not need it
            continue
    constructed: Any = model.model_construct(**fields)
    try:
        event = constructed
        for step in range(version, contract.latest_version):
            event = contract.upcasters[step](event)
        found = contract.dedup_key(event)
    except Exception:  # an upcaster needs a broken field: read the key off the old version's own fields
        try:
            found = contract.dedup_key(constructed)
        except Exception:  # a missing or broken field the key needs
            return None
    return found if isinstance(found, str) and found else None
