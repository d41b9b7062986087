"""Persistence: tables, migrations, and the SQL implementations of the handlers' ports."""
