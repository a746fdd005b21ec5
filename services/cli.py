"""The `dealflow` command: the deal service's commands and the notifier's, in one CLI."""

from __future__ import annotations

from services.deal_lifecycle import audit_cli
from services.deal_lifecycle.cli import app
from services.notifier import cli as notifier_cli

for command in (audit_cli.history, audit_cli.show, audit_cli.export, audit_cli.verify, audit_cli.diagram):
    app.command()(command)

app.command("notifier")(notifier_cli.notifier)
app.command("alerts")(notifier_cli.alerts)

__all__ = ["app"]
