"""Helpers shared by the test folders, imported by module path: envelopes, fakes, fleet runs, ops helpers."""
