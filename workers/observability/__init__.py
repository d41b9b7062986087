"""What the fleet tells its operators: metrics and their endpoint, the exporter, logs, Sentry, scrubbing and masking."""
