"""After failure: the archive drain, replay, its dry-run preflight, and repair by JSON Patch."""
