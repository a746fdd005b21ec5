"""`dealflow notifier` (the notifier process) and `dealflow alerts` (what it sent, or failed to)."""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import asdict
from uuid import UUID

import typer

from dealflow import event_loop
from dealflow.gc_tuning import settle_after_start_up
from dealflow.logs import configure_logging
from dealflow.nats_connection import connect, shown
from dealflow.terminal import printable

from .channels import build_channels
from .consumer import Notifier
from .rules import RulesError, RulesNotFound, load_rules
from .settings import NotifierSettings
from .store import AlertStore, AlertStoreUnreachable, NoAlertStore


def notifier() -> None:
    """Run the notifier: alerts people on deal transitions, walk-away conditions and relay stalls."""
    configure_logging()
    settings = NotifierSettings.from_env()
    try:
        rules = load_rules(settings.rules_path)
    except RulesError as e:
        problem = "file was " if isinstance(e, RulesNotFound) else "are invalid: "
        typer.echo(f"dealflow notifier: cannot start, the alert rules {problem}{e}", err=True)
        raise typer.Exit(code=2) from None
    servers = settings.nats_servers
    if not servers:
        # Never a guess at localhost:4222, which could be any other NATS (as for `dealflow relay`).
        typer.echo(
            "dealflow notifier: set NATS_URL to the NATS the deal service publishes to "
            "(`dealflow up` starts the notifier with its embedded NATS itself)",
            err=True,
        )
        raise typer.Exit(code=2)
    store = AlertStore(sqlite_path=settings.sqlite_path, database_url=settings.database_url)
    channels = build_channels(rules.channels)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        nc = await connect(servers, name="dealflow-notifier", credentials=settings.nats_credentials)
        settle_after_start_up()
        try:
            await Notifier(nc, rules, store, channels).run(stop)
        finally:
            for channel in channels.values():
                await channel.close()
            # close, not drain: a pull subscription's drain waits out nats-py's 30 s timeout
            await nc.close()

    typer.echo(f"dealflow: notifier on {', '.join(shown(servers))}, rules {settings.rules_path or 'built-in default'}", err=True)
    try:
        event_loop.run(main())
    finally:
        store.close()


def alerts(
    deal: str | None = typer.Option(None, "--deal", help="Only this deal's alerts."),
    failed: bool = typer.Option(False, "--failed", help="Only dead-lettered alerts (and invalid events)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per line."),
    show: str | None = typer.Option(None, "--show", help="Print what one alert said (its id, as the listing shows it), with its delivery."),
) -> None:
    """List the alerts the notifier delivered or dead-lettered, with their attempts."""
    if deal is not None:
        try:
            deal = str(UUID(deal))
        except ValueError:
            # The listing shows the first 8 characters only: say so, rather than list nothing.
            typer.echo(f"dealflow alerts: --deal takes a deal's whole id, not {printable(deal[:60])!r} (`dealflow alerts --json` shows them)", err=True)
            raise typer.Exit(code=2) from None
    settings = NotifierSettings.from_env()
    # Listing alerts reads: a missing store is named, never created empty (nothing listed looks like no alerts).
    store = _open_to_read(settings)
    try:
        if show is not None:
            _show(store, show, as_json=as_json)
            return
        for record in store.alerts(deal_id=deal, failed=failed):
            if as_json:
                typer.echo(json.dumps({**asdict(record), "tries": store.attempts(record.alert_id)}))
            else:
                # The address and the error (a receiver's answer) come from outside: one printable line.
                error = f"  ({record.last_error})" if record.last_error else ""
                typer.echo(
                    printable(
                        f"{record.updated_at[:19]}Z  {record.status:<9} {record.event_type:<26} {record.deal_id[:8]}  "
                        f"{record.recipient} via {record.channel}"
                        f"{' <' + record.address + '>' if record.address else ''}  tries={record.attempts}  id={record.alert_id}{error}"
                    )
                )
        if failed:
            for message_id, subject, reason, at in store.dead_letters():
                typer.echo(json.dumps({"dead_letter": message_id, "subject": subject, "reason": reason, "at": at}) if as_json else printable(f"{at[:19]}Z  invalid   {subject}  ({reason})"))
    finally:
        store.close()


def _open_to_read(settings: NotifierSettings) -> AlertStore:
    """The alert store as it is: never created, and a database that cannot be reached is one line."""
    where = printable(settings.describe_store())
    try:
        return AlertStore(sqlite_path=settings.sqlite_path, database_url=settings.database_url, create=False)
    except NoAlertStore:
        typer.echo(f"dealflow: no alert store: {where} (set DEALFLOW_NOTIFIER_DB or DEALFLOW_NOTIFIER_DATABASE_URL)", err=True)
    except AlertStoreUnreachable as error:
        typer.echo(f"dealflow: cannot reach the alert store, {where}: {printable(str(error))}", err=True)
    raise typer.Exit(code=2)


def _show(store: AlertStore, alert_id: str, *, as_json: bool) -> None:
    record = store.alert(alert_id)
    if record is None:
        typer.echo(f"dealflow: no alert {printable(alert_id)} in the store (`dealflow alerts` lists their ids)", err=True)
        raise typer.Exit(code=2)
    said = store.alert_text(alert_id)
    if as_json:
        title, text = said or (None, None)
        typer.echo(json.dumps({**asdict(record), "title": title, "text": text, "tries": store.attempts(alert_id)}))
        return
    error = f"  ({record.last_error})" if record.last_error else ""
    typer.echo(printable(f"{record.status} to {record.recipient} via {record.channel}, tries={record.attempts}{error}"))
    if said is None:
        typer.echo("(its text was not kept: the notifier that sent it predates alert texts)")
        return
    # The text's lines are printable already (alerts.describe); printing each again keeps a stored value from driving the terminal.
    for line in [said[0], "", *said[1].splitlines()]:
        typer.echo(printable(line))


# The notifier's own commands, for `dealflow notifier` and `dealflow alerts` started alone (main.py);
# cli.py puts the same two functions in the whole CLI.
app = typer.Typer(help="dealflow's notifier.", no_args_is_help=True)
app.command("notifier")(notifier)
app.command("alerts")(alerts)
