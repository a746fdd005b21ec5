"""The use cases: the command table, DealService (the one entry for commands), the read model, the views, the audit."""
