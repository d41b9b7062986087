"""Per-flow wiring of handlers to SQL ports and downstream adapters: one module per flow."""
