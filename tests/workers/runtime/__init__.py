"""Tests: workers/runtime."""
