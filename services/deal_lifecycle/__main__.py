"""`python -m services.deal_lifecycle` is the `dealflow` command too."""

from services.cli import app

app(prog_name="dealflow")
