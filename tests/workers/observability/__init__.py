"""Tests: workers/observability."""
