"""Tests: workers/flows."""
