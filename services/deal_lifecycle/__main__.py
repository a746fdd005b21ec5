"""`python -m dealflow.deal_lifecycle` is the `dealflow` command too."""

from dealflow.cli import app

app(prog_name="dealflow")
