"""Tests: workers/messaging."""
