"""The SQL implementations of the handlers' ports: one book per flow, written on the message's transaction."""
