"""The dead-letter archive in SQL: records, operator actions, replays and the exporter's aggregates."""
