"""The test suite; it mirrors the code, and shared helpers live in tests.support."""
