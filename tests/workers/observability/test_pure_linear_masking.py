"""Masking and scrubbing take time linear in their input: no text a publisher sends can make them spin."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from workers.observability.masking import MASK, MAX_MASKED_CHARS, mask_text
from workers.observability.scrubbing import MAX_SCRUBBED_CHARS, scrub_text

#: Texts that made a backtracking pattern rescan a run from each of its positions (quadratic time).
HOSTILE = {
    "no at sign": "a" * 200_000,
    "dotted": "a." * 100_000,
    "at then a long run": "x@" + "a" * 200_000,
    "scheme characters": "a+" * 100_000,
    "digits": "0" * 200_000,
    "phone-like": "01 0" + "1-" * 100_000 + "x",
}
#: Each pass over 200 k characters takes a few milliseconds; the quadratic patterns took minutes.
BOUND_SECONDS = 1.0


def timed(action: Callable[[str], str], text: str) -> float:
    start = time.perf_counter()
    action(text)
    return time.perf_counter() - start


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("action", [mask_text, scrub_text], ids=["mask_text", "scrub_text"])
def test_a_hostile_text_is_masked_in_linear_time(action: Callable[[str], str], text: str) -> None:
    assert timed(action, text) < BOUND_SECONDS


def test_an_email_at_the_end_of_a_long_run_is_still_found() -> None:
    text = "a" * 60_000 + " ana@example.com"

    assert mask_text(text).endswith(f" {MASK}")
    assert scrub_text(text).endswith(f" {MASK}")


def test_a_text_above_the_masking_bound_is_withheld_whole_not_read() -> None:
    text = "ana@example.com " * (MAX_MASKED_CHARS // 16 + 1)

    shown = mask_text(text)

    assert shown.startswith(MASK) and "ana@" not in shown
    assert f"{len(text):,} characters" in shown


def test_scrubbing_reads_a_bounded_prefix_and_says_how_much_it_cut() -> None:
    text = "call ana@example.com " * (2 * MAX_SCRUBBED_CHARS // 21)

    scrubbed = scrub_text(text)

    assert len(scrubbed) < MAX_SCRUBBED_CHARS + 100
    assert "ana@" not in scrubbed
    assert scrubbed.endswith("more characters cut before scrubbing]")


def test_a_cut_never_leaves_half_an_email_behind() -> None:
    text = "x" * (MAX_SCRUBBED_CHARS - 10) + "ana.secret@example.com and more"

    assert "ana.secret" not in scrub_text(text)
