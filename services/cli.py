"""The `dealflow` command: the deal service's commands and the notifier's, in one CLI."""

from __future__ import annotations

from services.deal_lifecycle.cli import app
from services.notifier import cli as notifier_cli

app.command("notifier")(notifier_cli.notifier)
app.command("alerts")(notifier_cli.alerts)

__all__ = ["app"]
