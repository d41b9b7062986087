"""The on-call web console: failure groups, records, replay, repair, discard and the audit log, in a browser."""
