"""The `dealflow` commands of the deal service: operating it (operate.py) and auditing it (audit.py)."""
