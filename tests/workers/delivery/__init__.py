"""Tests: workers/delivery."""
