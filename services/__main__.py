"""`python -m services` is the `dealflow` command."""

from services.cli import app

app(prog_name="dealflow")
