"""Tests: workers/store."""
