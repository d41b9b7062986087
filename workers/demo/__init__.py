"""The embedded demo: a retailer's day through the real pipeline, with no services."""
