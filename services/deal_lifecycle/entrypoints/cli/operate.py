"""The `dealflow` command line (typer)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats, client_users, die_with_parent, port_is_free
from dealflow.deal_lifecycle.adapters.identity import mint
from dealflow.deal_lifecycle.adapters.policy_file import PolicyError, PolicyNotFound, load_policy
from dealflow.deal_lifecycle.adapters.relay_status import Announcer as RelayAnnouncer
from dealflow.deal_lifecycle.adapters.relay_status import report as relay_report
from dealflow.deal_lifecycle.application.access import AccessRole
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import build_deals, run_relay, trusted_keys
from dealflow.deal_lifecycle.bootstrap import serve as serve_http
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.policy import Policy
from dealflow.deal_lifecycle.entrypoints.cli.local_nats import embedded_nats_dir, embedded_nats_url, nats_credentials, nats_url_file
from dealflow.deal_lifecycle.entrypoints.cli.watch import ReaderGone, WatchRefused
from dealflow.deal_lifecycle.entrypoints.cli.watch import watch as tail
from dealflow.durations import DurationError, parse_duration
from dealflow.logs import configure_logging
from dealflow.terminal import printable

app = typer.Typer(help="dealflow: the event-sourced deal lifecycle.", no_args_is_help=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port to listen on."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes sharing the port (one relay leads at a time)."),
    relay: bool = typer.Option(True, help="Run the NATS relay in this process; --no-relay when `dealflow relay` runs it apart."),
) -> None:
    """Run the deal service's HTTP API."""
    settings = Settings.from_env()
    policy = _policy_or_exit(settings)
    keys = _keys_or_exit(settings)
    store = settings.describe_store()
    processes = f" in {workers} worker processes" if workers > 1 else ""
    relaying = "" if not settings.nats_servers else ", relay in this process" if relay else ", no relay (run `dealflow relay`)"
    typer.echo(
        f"dealflow: deal service on http://{host}:{port}{processes} (OpenAPI at /schema), events in {store}, "
        f"policy {settings.describe_policy()} ({policy.version[:19]}), tokens verified with {keys}{relaying}",
        err=True,
    )
    # Slow clients cut off, header size capped; on SIGINT/SIGTERM live streams end first, so it stops promptly.
    raise typer.Exit(serve_http(settings, host=host, port=port, workers=workers, relay=relay))


@app.command()
def up(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port to listen on."),
    nats_port: int = typer.Option(4222, help="Port of the embedded NATS (a free one if taken)."),
    nats_max_payload: int | None = typer.Option(
        None, help="The embedded NATS's max_payload in bytes (its default: 1 MB); raise it to let a relay stalled on a larger event resume."
    ),
    nats_client: list[str] = typer.Option(
        [], "--nats-client", help="A system that sends commands over the embedded NATS with a user of its own (repeat for more): client-NAME, reading only its own replies."
    ),
) -> None:
    """Start the whole system: embedded NATS (unless NATS_URL is set), the deal service with its relay, the notifier.

    A small supervisor: each part is its own process; when one stops, or on Ctrl-C/SIGTERM,
    all are stopped, in reverse order.
    """
    settings = Settings.from_env()
    _policy_or_exit(settings)
    _keys_or_exit(settings, warn=False)  # checked here, warned about by the deal service it starts
    try:
        client_users(nats_client)
    except ValueError as e:
        typer.echo(f"dealflow: cannot start, --nats-client: {printable(str(e))}", err=True)
        raise typer.Exit(code=2) from None
    if not port_is_free(port, host):
        typer.echo(f"dealflow: cannot start, port {port} on {host} is taken: choose another with --port", err=True)
        raise typer.Exit(code=2)
    embedded = None
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    env = dict(os.environ)
    children: list[subprocess.Popen[bytes]] = []
    relay_health = _RelayHealth(settings)
    try:
        if not settings.nats_servers:
            store = embedded_nats_dir(settings)
            embedded = EmbeddedNats(
                store, port=nats_port if port_is_free(nats_port) else None, max_payload=nats_max_payload, secured=True, clients=nats_client
            )
            env["NATS_URL"] = embedded.start()
            nats_url_file(settings).write_text(embedded.url)
            typer.echo(
                f"dealflow: embedded NATS with JetStream on {embedded.url}, data in {store}; "
                f"only its own users connect (nkey seeds in {store / 'credentials'})",
                err=True,
            )
            for name in nats_client:
                own = embedded.environment(f"client-{name}")
                typer.echo(
                    f"dealflow: NATS user for {name}: seed {own['NATS_NKEY_SEED']}, replies on inbox prefix {own['NATS_INBOX_PREFIX']}",
                    err=True,
                )
        # Each part proves who it is to the embedded NATS with its own nkey, allowed only its own subjects.
        serve_env = env if embedded is None else {**env, **embedded.environment("deal-service")}
        notifier_env = env if embedded is None else {**env, **embedded.environment("notifier")}
        children.append(_spawn(["serve", "--host", host, "--port", str(port)], serve_env))
        children.append(_spawn(["notifier"], notifier_env))
        names = {children[0].pid: "the deal service", children[1].pid: "the notifier"}
        if not settings.auth_jwks:
            typer.echo(
                f"dealflow: open http://{host}:{port} with a token: TOKEN=$({_invoked_as()} token --role emitter --sub crm) "
                f"(the development key; `dealflow token --help` for the roles)",
                err=True,
            )
        typer.echo(f"dealflow: the ops dashboard: {_dashboard_link(settings, host, port)}", err=True)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
            relay_health.check()
        for child in children:
            if child.poll() is not None:
                typer.echo(f"dealflow: {names[child.pid]} stopped by itself (exit {child.returncode}; its lines above say why)", err=True)
    finally:
        began = time.monotonic()
        parts = "the notifier and the deal service" + (", then the embedded NATS" if embedded is not None else "")
        typer.echo(f"dealflow: stopping {parts}", err=True)
        # Both at once (each finishes what it has in hand), and NATS only after both: its users never lose it.
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            _stop(child)
        relay_health.close()
        if embedded is not None:
            embedded.stop()
            nats_url_file(settings).unlink(missing_ok=True)
        typer.echo(f"dealflow: stopped in {time.monotonic() - began:.1f} s", err=True)
    failed = [child.returncode for child in children if child.returncode not in (0, -signal.SIGTERM)]
    if failed and not stopping:
        raise typer.Exit(code=1)


class _RelayHealth:
    """`dealflow up` reads the relay's status from the store every few seconds and says when it stalls."""

    def __init__(self, settings: Settings, every_seconds: float = 5.0) -> None:
        self.settings = settings
        self.every_seconds = every_seconds
        self.next_check = time.monotonic() + every_seconds
        self.announcer = RelayAnnouncer()
        self.deals: DealService | None = None

    def check(self) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + self.every_seconds
        try:
            if self.deals is None:
                self.deals = build_deals(self.settings)
            lines = self.announcer.lines(relay_report(self.deals, self.deals.factory.tracking_recorder()))
        except Exception:  # noqa: BLE001 - the store may be busy or not created yet: look again next time
            return
        for line in lines:
            typer.echo(printable(line), err=True)

    def close(self) -> None:
        if self.deals is not None:
            self.deals.close()


# The dashboard's link from `dealflow up`: a token for watching the pipeline and trying commands.
DASHBOARD_ROLES = (AccessRole.OPS, AccessRole.EMITTER)
DASHBOARD_SUB = "ops-dashboard"
DASHBOARD_TTL_SECONDS = 12 * 3600


def _dashboard_link(settings: Settings, host: str, port: int) -> str:
    """/ui on this host; with the development key, an ops and emitter token in the fragment (which the
    browser never sends: the page keeps it in the tab and takes it out of the address)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host  # noqa: S104 - naming, not binding
    url = f"http://{shown}:{port}/ui"
    if settings.auth_jwks:
        return f"{url} (sign in with a token of your identity provider)"
    token = mint(
        settings.state_dir,
        sub=DASHBOARD_SUB,
        roles=[str(role) for role in DASHBOARD_ROLES],
        ttl_seconds=DASHBOARD_TTL_SECONDS,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
    )
    return f"{url}#token={token} (ops and emitter, the development key, valid {DASHBOARD_TTL_SECONDS // 3600} h)"


def _invoked_as() -> str:
    """How to run dealflow again as this process was run (.venv/bin/dealflow, say), for advice on start-up."""
    program = sys.argv[0]
    return program if Path(program).name == "dealflow" else "dealflow"


def _spawn(arguments: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A part of the system, in a process group of its own: Ctrl-C in the terminal reaches `up` alone,
    which stops the parts in order (a part still importing when Ctrl-C came would print a traceback);
    and the kernel stops the part if `up` itself dies."""
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "dealflow", *arguments], env=env, process_group=0, preexec_fn=die_with_parent  # noqa: PLW1509
    )


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@app.command()
def relay(
    status: bool = typer.Option(False, "--status", help="Print where the relay is and whether it is stalled (exit 1 if so), then exit."),
    as_json: bool = typer.Option(False, "--json", help="With --status: one JSON object."),
) -> None:
    """Run only the relay (store -> JetStream); several may run, one publishes at a time."""
    settings = Settings.from_env()
    if status:
        _relay_status(settings, as_json=as_json)
        return
    configure_logging()
    if not settings.nats_servers:
        typer.echo("dealflow relay: set NATS_URL", err=True)
        raise typer.Exit(code=2)
    run_relay(settings, _policy_or_exit(settings))


def _relay_status(settings: Settings, *, as_json: bool) -> None:
    """What the relay has published, what it has not, and if it is stalled, at which event and why."""
    deals = build_deals(settings, _policy_or_exit(settings))
    try:
        report = relay_report(deals, deals.factory.tracking_recorder())
    finally:
        deals.close()
    if as_json:
        typer.echo(json.dumps(report.as_json()))
    else:
        typer.echo(f"dealflow relay on {settings.describe_store()}")
        for line in report.lines():
            typer.echo(printable(line))
    if report.stalled:
        raise typer.Exit(code=1)


@app.command()
def watch(
    deal: str | None = typer.Option(None, "--deal", help="Only this deal's events."),
    event_type: str | None = typer.Option(None, "--type", help="Only this event type, e.g. ContractSigned."),
    since: str | None = typer.Option(None, help="all, a duration (15m, 2h, 1d) or an ISO time; default: new events only."),
    as_json: bool = typer.Option(False, "--json", help="One JSON event per line, for piping."),
    limit: int | None = typer.Option(None, help="Stop after this many events."),
) -> None:
    """Tail the lifecycle stream from JetStream, live."""
    settings = Settings.from_env()
    # Without NATS_URL, var/nats.url is read again on every reconnect: a restarted `dealflow up` may use a new port.
    servers = settings.nats_servers or (lambda: embedded_nats_url(settings))
    try:
        asyncio.run(
            tail(
                servers, deal=deal, event_type=event_type, since=since, as_json=as_json, limit=limit,
                write=_print, warn=lambda text: typer.echo(text, err=True),
                credentials=nats_credentials(settings, "watcher"), reader_gone=_stdout_closed,
            )
        )
    except (ValueError, WatchRefused) as e:
        typer.echo(f"dealflow watch: {printable(str(e))}", err=True)
        raise typer.Exit(code=2) from None
    except ReaderGone:
        # stdout is a closed pipe: point it at /dev/null so Python's own flush at exit does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        pass


def _stdout_closed() -> bool:
    """Whether whoever reads our standard output has gone (a pipe whose reader closed reports an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLERR)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _print(text: str) -> None:
    typer.echo(text)
    sys.stdout.flush()


@app.command("rebuild-read-model")
def rebuild_read_model() -> None:
    """Rebuild the deals listing from the event log (run while the service is stopped)."""
    configure_logging()
    settings = Settings.from_env()
    deals = build_deals(settings, _policy_or_exit(settings))
    try:
        typer.echo(f"rebuilt the read model from the event log: {deals.rebuild_read_model()} deals")
    finally:
        deals.close()


@app.command()
def token(
    role: list[AccessRole] = typer.Option(..., "--role", help="A role the token carries (repeat for more): emitter, ops, auditor, approver, admin."),
    sub: str = typer.Option(..., "--sub", help="Who the token names: the actor recorded on every event it causes."),
    ttl: str = typer.Option("1h", "--ttl", help="How long it is valid: a number and a unit, e.g. 90m, 1h, 7d."),
) -> None:
    """Print a bearer token signed with the development key under var/ (for `dealflow up` without DEALFLOW_AUTH_JWKS)."""
    settings = Settings.from_env()
    if settings.auth_jwks:
        typer.echo(
            f"dealflow token: tokens come from your identity provider here (DEALFLOW_AUTH_JWKS={printable(settings.auth_jwks)}); "
            "this command signs with the development key only",
            err=True,
        )
        raise typer.Exit(code=2)
    try:
        seconds = parse_duration(ttl).total_seconds()
    except DurationError as e:
        typer.echo(f"dealflow token: --ttl {e}", err=True)
        raise typer.Exit(code=2) from None
    if not sub.strip() or len(sub) > 200 or not sub.isprintable():
        typer.echo("dealflow token: --sub must be a printable name of 1 to 200 characters", err=True)
        raise typer.Exit(code=2)
    if sub.strip().casefold() == "dealflow":
        typer.echo("dealflow token: --sub must not be 'dealflow', the service's own name on the facts it records itself", err=True)
        raise typer.Exit(code=2)
    # The token alone on stdout, so TOKEN=$(dealflow token ...) captures it.
    typer.echo(
        mint(
            settings.state_dir,
            sub=sub.strip(),
            roles=[str(r) for r in dict.fromkeys(role)],
            ttl_seconds=int(seconds),
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
        )
    )


def _keys_or_exit(settings: Settings, *, warn: bool = True) -> str:
    """Refuse to start without keys to verify tokens with; say which are trusted."""
    try:
        keys = trusted_keys(settings)
    except (OSError, ValueError) as e:
        typer.echo(f"dealflow: cannot start, DEALFLOW_AUTH_JWKS: {printable(str(e))}", err=True)
        raise typer.Exit(code=2) from None
    except Exception as e:  # noqa: BLE001 - e.g. a JWKS with no usable key: one line, no traceback
        typer.echo(f"dealflow: cannot start, the trusted keys: {printable(str(e))}", err=True)
        raise typer.Exit(code=2) from None
    if settings.auth_jwks:
        if warn and not settings.auth_audience:
            # An identity provider others share issues tokens for other services too; without an audience
            # any of those that carries a roles claim would be taken for one meant for dealflow.
            typer.echo(
                "dealflow: warning: DEALFLOW_AUTH_AUDIENCE is not set, so a token your identity provider issued for "
                "any service is accepted here: set it (and DEALFLOW_AUTH_ISSUER) to the values it puts in dealflow's tokens",
                err=True,
            )
        return f"the keys of {printable(keys.describe())}"
    return f"the development key in {settings.state_dir} (mint tokens with `dealflow token`)"


def _policy_or_exit(settings: Settings) -> Policy:
    """Refuse to start on a missing or malformed policy, saying where and what (no traceback)."""
    try:
        return load_policy(settings.policy_path)
    except PolicyError as e:
        problem = "file was " if isinstance(e, PolicyNotFound) else "is malformed: "
        typer.echo(f"dealflow: cannot start, the Right Terms policy {problem}{e}", err=True)
        raise typer.Exit(code=2) from None
