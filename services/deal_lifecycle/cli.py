"""The `dealflow` command line (typer)."""

from __future__ import annotations

import typer
import uvicorn

from .application import DealService
from .config import Settings
from .domain.policy import Policy
from .logs import configure_logging
from .policy_file import PolicyError, load_policy

app = typer.Typer(help="dealflow: the event-sourced deal lifecycle.", no_args_is_help=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port to listen on."),
) -> None:
    """Run the deal service's HTTP API."""
    settings = Settings.from_env()
    policy = _policy_or_exit(settings)
    store = settings.describe_store()
    typer.echo(f"dealflow: deal service on http://{host}:{port} (OpenAPI at /schema), events in {store}, policy {policy.version[:19]}", err=True)
    uvicorn.run(
        "services.deal_lifecycle.http.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
    )


@app.command()
def up(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port to listen on."),
) -> None:
    """Start the whole system on this machine (today: the deal service on its SQLite store)."""
    serve(host=host, port=port)


@app.command("rebuild-read-model")
def rebuild_read_model() -> None:
    """Rebuild the deals listing from the event log (run while the service is stopped)."""
    configure_logging()
    settings = Settings.from_env()
    deals = DealService(env=settings.eventsourcing_env(), policy=_policy_or_exit(settings))
    try:
        typer.echo(f"rebuilt the read model from the event log: {deals.rebuild_read_model()} deals")
    finally:
        deals.close()


def _policy_or_exit(settings: Settings) -> Policy:
    """Refuse to start on a malformed policy, saying where and what (no traceback)."""
    try:
        return load_policy(settings.policy_path)
    except PolicyError as e:
        typer.echo(f"dealflow: cannot start, the Right Terms policy is malformed: {e}", err=True)
        raise typer.Exit(code=2) from None
