"""The `flowfleet` command line: one module per command group, registered in one place."""
