"""The `dealflow` command: the deal service's commands and the notifier's, in one CLI."""

from __future__ import annotations

import typer

from dealflow.deal_lifecycle.entrypoints.cli import audit as audit_cli
from dealflow.deal_lifecycle.entrypoints.cli.operate import app
from dealflow.notifier import cli as notifier_cli

for command in (audit_cli.history, audit_cli.show, audit_cli.export, audit_cli.verify, audit_cli.diagram):
    app.command()(command)


@app.command()
def schemas(check: bool = typer.Option(False, "--check", help="Only report files that differ from the code; exit 1 if any.")) -> None:
    """Write schemas/ (JSON Schema, OpenAPI, AsyncAPI) from the code's own types."""
    from dealflow import contracts  # noqa: PLC0415 - builds the whole app; only this command needs it

    checkout = contracts.checkout_schemas()
    if check:
        differing = contracts.drift()
        # Installed, the files are the package's own: a difference is a broken install, not a file to rewrite.
        advice = "run `dealflow schemas`" if checkout else "this installed package is inconsistent: reinstall dealflow"
        strays = contracts.strays()
        for path in differing:
            typer.echo(f"{contracts.SCHEMAS / path if checkout is None else 'schemas/' + path} differs from the code: {advice}")
        for path in strays:
            typer.echo(f"{contracts.SCHEMAS / path if checkout is None else 'schemas/' + path} is not made by the code: remove it")
        if not differing and not strays:
            typer.echo(f"{'schemas/' if checkout else contracts.SCHEMAS} matches the code ({len(contracts.generate())} files)")
        raise typer.Exit(code=1 if differing or strays else 0)
    try:
        changed = contracts.write()
    except contracts.InstalledPackage as e:
        typer.echo(f"dealflow schemas: {e}; `dealflow schemas --check` compares them with the code", err=True)
        raise typer.Exit(code=2) from None
    for path in changed:
        typer.echo(f"wrote schemas/{path}")

app.command("notifier")(notifier_cli.notifier)
app.command("alerts")(notifier_cli.alerts)

__all__ = ["app"]
