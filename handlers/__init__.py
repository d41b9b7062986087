"""Business rules per flow: plain functions over the latest contract and injected ports."""
