"""The deal service's composition root: the one place its store, policy and connections are built.

Every process of the deal service starts here: `dealflow serve` (the HTTP app, with the NATS
relay and command responder when NATS is configured), `dealflow relay`, the operators' and the
auditors' commands. The entry points (HTTP, NATS, CLI) never build these themselves, and never
import each other.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

from litestar import Litestar
from uvicorn.config import STARTUP_FAILURE

from dealflow.deal_lifecycle.adapters.identity import TrustedKeys, dev_key
from dealflow.deal_lifecycle.adapters.policy_file import load_policy
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap.messaging import DealMessaging
from dealflow.deal_lifecycle.bootstrap.scheduling import scheduling
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.policy import Policy
from dealflow.deal_lifecycle.entrypoints.http.app import create_app
from dealflow.deal_lifecycle.entrypoints.http.server import ServerConfig, ShutdownFirstServer, Workers
from dealflow import event_loop
from dealflow.gc_tuning import settle_after_start_up

# Reading the record judges nothing: the auditors' commands need no policy file (the one each
# decision was judged by is in its events), so they work wherever DEALFLOW_POLICY points.
NO_POLICY = Policy(version="", terms={}, non_negotiables={})


def build_deals(settings: Settings, policy: Policy | None = None) -> DealService:
    """The application service on the configured store, judging by `policy` or the configured policy file."""
    return DealService(env=settings.eventsourcing_env(), policy=load_policy(settings.policy_path) if policy is None else policy)


def trusted_keys(settings: Settings) -> TrustedKeys:
    """The keys bearer tokens are verified against: DEALFLOW_AUTH_JWKS (a file is read now, so a missing or
    broken one stops start-up), or else the development key under var/."""
    if settings.auth_jwks:
        keys = TrustedKeys(settings.auth_jwks, issuer=settings.auth_issuer, audience=settings.auth_audience)
        keys.load_now()
        return keys
    return dev_key(settings.state_dir, issuer=settings.auth_issuer, audience=settings.auth_audience)


def run_relay(settings: Settings, policy: Policy) -> None:
    """`dealflow relay`: the relay alone (store -> JetStream) until SIGINT/SIGTERM; several may run, one publishes at a time."""
    deals = build_deals(settings, policy)
    messaging = DealMessaging(deals, settings, None, commands=False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, messaging.stop_event.set)
        await messaging.run_until_stopped()

    try:
        event_loop.run(main())
    finally:
        deals.close()


class NoStore(LookupError):
    """The configured store is not there (no SQLite file, or no events table in the database or schema)."""


class StoreUnreachable(ConnectionError):
    """The configured PostgreSQL server cannot be reached, or has no such database."""


def open_to_read(settings: Settings) -> DealService:
    """The store as it is, to read: a missing store is NoStore, never a new empty one (read-only commands
    must not show an auditor an empty store as intact)."""
    if not _store_exists(settings):
        raise NoStore(settings.describe_store())
    # Reading creates no tables, even if the store vanished since the check above.
    return DealService(env={**settings.eventsourcing_env(), "CREATE_TABLE": "n"}, policy=NO_POLICY)


def _store_exists(settings: Settings) -> bool:
    if settings.database_url is None:
        return settings.sqlite_path.is_file()
    import psycopg  # noqa: PLC0415 - loaded only when PostgreSQL is used

    from dealflow.deal_lifecycle.adapters.storage.postgres import store_exists  # noqa: PLC0415

    try:
        return store_exists(settings.eventsourcing_env())
    except psycopg.Error as error:  # the server is down, or the database is not there
        raise StoreUnreachable(str(error).strip()) from None


def service_app(
    settings: Settings | None = None,
    service: DealService | None = None,
    keys: TrustedKeys | None = None,
    *,
    relay: bool = True,
    scheduler: bool = True,
    serving: bool = False,
) -> Litestar:
    """The HTTP app on its own service (or `service`, which stays the caller's to close), with the NATS
    command responder and (unless `relay` is False: `dealflow relay` runs it apart) the relay running
    beside it when NATS is configured, and the scheduler of deadlines (unless `scheduler` is False) in any
    case; tokens are verified with `keys`, or the configured ones.
    `serving`: the app is the process's own (`dealflow serve`), whose garbage collector is set up for
    serving once it has started (gc_tuning.py); tests build many apps in one process and leave it be."""
    settings = settings or Settings.from_env()
    verifier = keys or trusted_keys(settings)
    companions: list[Callable[[DealService], AbstractAsyncContextManager[None]]] = []
    if scheduler:

        @asynccontextmanager
        async def keeping_time(deals: DealService) -> AsyncIterator[None]:
            async with scheduling(deals, settings):
                yield

        companions.append(keeping_time)
    if settings.nats_servers:

        @asynccontextmanager
        async def messaging(deals: DealService) -> AsyncIterator[None]:
            running = DealMessaging(deals, settings, verifier, relay=relay)
            await running.start()
            try:
                yield
            finally:
                await running.stop()

        companions.append(messaging)
    if serving:
        companions.append(_settled)
    return create_app(settings, service if service is not None else lambda: build_deals(settings), verifier, companions)


@asynccontextmanager
async def _settled(_: DealService) -> AsyncIterator[None]:
    settle_after_start_up()  # the last companion: everything the app builds at start-up is built
    yield


def serve(settings: Settings, *, host: str, port: int, workers: int = 1, relay: bool = True) -> int:
    """Serve the HTTP API until SIGINT/SIGTERM, then stop promptly (see ShutdownFirstServer); the exit code.

    With `workers` > 1, so many processes share the listening socket (uvicorn's workers): each has its
    own service on the one store (whose version check keeps order between them, as between any
    processes), and of their relays one leads at a time."""
    options: dict[str, Any] = {"host": host, "port": port, "header_timeout": settings.header_timeout}
    if workers == 1:
        server = ShutdownFirstServer(ServerConfig(service_app(settings, relay=relay, serving=True), **options))
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    # Each worker builds its own app (and service) from these settings, sent to it pickled.
    config = ServerConfig(partial(service_app, settings, relay=relay, serving=True), factory=True, workers=workers, **options)
    supervisor = Workers(config, sockets=[config.bind_socket()])
    supervisor.run()
    return 1 if supervisor.failed else 0
