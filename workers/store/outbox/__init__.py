"""The outbox in SQL: deliveries recorded with their effects, claimed and settled by the relay; pause and breaker."""
