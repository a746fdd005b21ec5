"""`python -m services.deal_lifecycle` is the `dealflow` command."""

from .cli import app

app(prog_name="dealflow")
