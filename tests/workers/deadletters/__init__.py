"""Tests: workers/deadletters."""
