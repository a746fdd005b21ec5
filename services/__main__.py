"""`python -m services` is the `dealflow` command."""

from dealflow.cli import app

app(prog_name="dealflow")
