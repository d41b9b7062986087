"""Tests of the bench's own helpers (not of the figures, which are never asserted)."""
