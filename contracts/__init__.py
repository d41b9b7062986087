"""Versioned message contracts: the wire format upstream teams publish against."""
