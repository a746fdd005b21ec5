"""The `dealflow` command: the deal service's commands and the notifier's, in one CLI."""

from __future__ import annotations

import typer

from services.deal_lifecycle import audit_cli
from services.deal_lifecycle.cli import app
from services.notifier import cli as notifier_cli

for command in (audit_cli.history, audit_cli.show, audit_cli.export, audit_cli.verify, audit_cli.diagram):
    app.command()(command)


@app.command()
def schemas(check: bool = typer.Option(False, "--check", help="Only report files that differ from the code; exit 1 if any.")) -> None:
    """Write schemas/ (JSON Schema, OpenAPI, AsyncAPI) from the code's own types."""
    from services import contracts  # noqa: PLC0415 - builds the whole app; only this command needs it

    if check:
        differing = contracts.drift()
        for path in differing:
            typer.echo(f"schemas/{path} differs from the code: run `dealflow schemas`")
        raise typer.Exit(code=1 if differing else 0)
    for path in contracts.write():
        typer.echo(f"wrote schemas/{path}")

app.command("notifier")(notifier_cli.notifier)
app.command("alerts")(notifier_cli.alerts)

__all__ = ["app"]
