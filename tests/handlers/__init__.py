"""Tests: handlers."""
