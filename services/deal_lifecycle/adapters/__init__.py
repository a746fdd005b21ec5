"""The doors out: the event store (SQLite, PostgreSQL), the relay to JetStream, leadership, checkpoints, the embedded NATS server, the policy file."""
