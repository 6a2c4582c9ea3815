"""Events: transactional outbox, CloudEvents, NATS JetStream, signed webhooks, live streams."""
