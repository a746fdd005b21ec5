"""Where events live: SQLite by default, PostgreSQL when a URL is configured.

Both stores are eventsourcing's own recorders, extended so that the deals read model
and the idempotency receipts are written in the same transaction as the events.
"""
