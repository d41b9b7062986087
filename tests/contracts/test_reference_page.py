"""docs/contracts.md is the generated reference page, it names every contract version, and its examples are valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from contracts.envelope import Envelope
from contracts.published import REGISTRY
from contracts.reference import REGENERATE, render_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"
JSON_BLOCK = re.compile(r"^```json\n(.*?)\n```$", re.MULTILINE | re.DOTALL)


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def embedded_envelopes() -> list[dict[str, Any]]:
    return [json.loads(block) for block in JSON_BLOCK.findall(page())]


def test_the_committed_page_is_what_the_registry_renders() -> None:
    assert page() == render_reference(REGISTRY), f"docs/contracts.md is out of date; regenerate it: {REGENERATE}"


def test_rendering_is_deterministic() -> None:
    assert render_reference(REGISTRY) == render_reference(REGISTRY)


def test_the_page_has_a_section_for_every_contract_and_version() -> None:
    text = page()
    for contract in REGISTRY:
        assert f"\n### `{contract.name}`\n" in text
        for version in contract.versions:
            assert f"\n#### `{contract.name}` v{version}" in text
            assert f"flowfleet contracts schema {contract.name} --version {version}" in text
        assert f"#### `{contract.name}` v{contract.latest_version} (latest)" in text


def test_every_example_on_the_page_is_a_valid_envelope_of_its_contract() -> None:
    for document in embedded_envelopes():
        envelope = Envelope.model_validate(document)
        REGISTRY.get(envelope.contract).parse(envelope.version, envelope.data)


def test_every_contract_version_has_an_example_envelope_on_the_page() -> None:
    shown = {(document["contract"], document["version"]) for document in embedded_envelopes()}
    expected = {(contract.name, version) for contract in REGISTRY for version in contract.versions}
    assert expected <= shown, f"no example envelope for {sorted(expected - shown)}"


def test_the_page_documents_the_wire_format_and_every_failure_stage() -> None:
    text = page()
    for fact in ("`commerce.events`", "**topic**", "content_type=application/json", "persistent", "`message_id`"):
        assert fact in text
    for stage in ("decode", "contract", "handler", "expired"):
        assert f"| `{stage}` |" in text
