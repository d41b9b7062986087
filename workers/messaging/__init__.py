"""AMQP and its formats: broker, consumer, ingress, topology, publisher, management API, dead-letter headers."""
