"""Tests: workers/cli."""
