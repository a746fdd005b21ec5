"""The deal service on NATS: the relay out and the command responder in, on one connection.

Started by the HTTP app's lifespan when NATS is configured, and alone by `dealflow relay`.
NATS being down never stops the service: commands keep being stored, and the relay
publishes the backlog, in order, once NATS answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

import psycopg
import structlog

from .application import DealService
from .bus import connect
from .config import Settings
from .leadership import FileLeadership, Leadership, PostgresLeadership
from .nats_commands import CommandResponder
from .relay import EventRelay

log = structlog.get_logger("dealflow.messaging")


class DealMessaging:
    def __init__(self, deals: DealService, settings: Settings, *, relay: bool = True, commands: bool = True) -> None:
        assert settings.nats_servers, "messaging needs NATS_URL"
        self.deals = deals
        self.settings = settings
        self.with_relay = relay
        self.with_commands = commands
        self.stop_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dealflow-messaging")

    async def stop(self) -> None:
        self.stop_event.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)

    async def run_until_stopped(self) -> None:
        await self._run()

    async def _run(self) -> None:
        nc = await connect(self.settings.nats_servers, name="dealflow-deal-lifecycle")
        log.info("connected to NATS", servers=self.settings.nats_servers)
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.with_commands:
                await CommandResponder(self.deals, nc).listen()
            if self.with_relay:
                relay = EventRelay(self.deals, nc, batch_size=self.settings.relay_batch_size)
                self.deals.on_recorded(relay.wake)
                tasks.append(asyncio.create_task(relay.run(self.stop_event, self._leadership())))
                if self.settings.database_url:
                    tasks.append(asyncio.create_task(self._listen_to_postgres(relay.wake)))
            await self.stop_event.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await nc.drain()

    def _leadership(self) -> Leadership:
        if self.settings.database_url:
            return PostgresLeadership(_conninfo(self.settings.database_url), scope=self._store_identity())
        return FileLeadership(self.settings.sqlite_path)

    def _store_identity(self) -> str:
        return f"{self.settings.database_url}:{self.deals.recorder.events_table_name}"  # type: ignore[attr-defined]

    async def _listen_to_postgres(self, wake: object) -> None:
        """Events stored by other processes wake this relay at once (PostgreSQL LISTEN/NOTIFY)."""
        channel = self.deals.recorder.channel_name  # type: ignore[attr-defined]
        while not self.stop_event.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    _conninfo(self.settings.database_url or ""), autocommit=True
                ) as conn:
                    await conn.execute(f'LISTEN "{channel}"')
                    async for _ in conn.notifies():
                        wake()  # type: ignore[operator]
            except psycopg.Error as e:
                log.warning("cannot listen to PostgreSQL notifications", error=str(e))
                await asyncio.sleep(1)


def _conninfo(database_url: str) -> str:
    """The URL psycopg accepts: ours carries `?schema=`, which is not a libpq parameter."""
    url = urlsplit(database_url)
    return urlunsplit((url.scheme, url.netloc, url.path, "", ""))
