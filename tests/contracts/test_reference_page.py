"""docs/contracts.md is the generated reference page, it names every contract version, and its examples are valid."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from contracts.envelope import Envelope
from contracts.published import REGISTRY
from contracts.reference import REGENERATE, FleetDefaults, render_reference
from workers.settings import Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"
JSON_BLOCK = re.compile(r"^```json\n(.*?)\n```$", re.MULTILINE | re.DOTALL)


def defaults() -> FleetDefaults:
    """The defaults the page states, read from the settings' own defaults (not from any environment)."""
    fields = Settings.model_fields
    return FleetDefaults(
        max_event_age_seconds=fields["max_event_age_seconds"].default,
        retry_window_seconds=fields["retry_window_seconds"].default,
        max_attempts=fields["max_attempts"].default,
        delivery_budget_seconds=fields["erp_delivery_budget_seconds"].default,
    )


def rendered() -> str:
    return render_reference(REGISTRY, defaults())


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def embedded_envelopes() -> list[dict[str, Any]]:
    return [json.loads(block) for block in JSON_BLOCK.findall(page())]


def test_the_committed_page_is_what_the_registry_and_the_settings_render() -> None:
    if os.environ.get("REGENERATE_DOCS") == "1":
        PAGE.write_text(rendered(), encoding="utf-8")
    assert page() == rendered(), f"docs/contracts.md is out of date; regenerate it: {REGENERATE}"


def test_rendering_is_deterministic() -> None:
    assert rendered() == rendered()


def test_the_defaults_the_page_states_are_the_settings_defaults() -> None:
    text = page()
    fleet = defaults()
    assert f"more than {fleet.max_event_age_seconds // 86_400} days old" in " ".join(text.split())
    assert f"up to {fleet.max_attempts} attempts within {fleet.retry_window_seconds // 60} minutes" in text


def test_a_changed_default_changes_the_page() -> None:
    changed = render_reference(REGISTRY, FleetDefaults(3 * 86_400, 15 * 60, 4, 6 * 3600))
    assert "up to 4 attempts within 15 minutes" in changed
    assert "delivery budget (6 hours by default)" in changed
    assert "more than 3 days" in changed
    assert changed != rendered()


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
