"""RabbitMQ topology, publishing with confirms and consuming with explicit acks."""
