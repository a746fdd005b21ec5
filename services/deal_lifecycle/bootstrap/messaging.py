"""The deal service on NATS: the relay out and the command responder in, on one connection.

Started by the HTTP app's lifespan when NATS is configured, and alone by `dealflow relay`.
NATS being down never stops the service: commands keep being stored, and the relay
publishes the backlog, in order, once NATS answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable

import psycopg
import structlog

from dealflow.deal_lifecycle.adapters.bus import RELAY_WAKE_SUBJECT, connect
from dealflow.deal_lifecycle.adapters.checkpoints import CheckpointPublisher, CheckpointSettings
from dealflow.deal_lifecycle.adapters.leadership import Leadership
from dealflow.deal_lifecycle.adapters.relay import EventRelay
from dealflow.deal_lifecycle.application.access import Verifier
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap.scheduling import conninfo, leadership_for
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.entrypoints.nats_commands import CommandResponder
from dealflow.nats_connection import shown

log = structlog.get_logger("dealflow.messaging")

# A part that dies is restarted after 0.5 s, then 1, 2, 4... up to 30 s; the back-off starts
# again once it has run for a minute.
RESTART_MAX_SECONDS = 30.0
RESTART_RESET_SECONDS = 60.0


class DealMessaging:
    def __init__(
        self, deals: DealService, settings: Settings, verifier: Verifier | None, *, relay: bool = True, commands: bool = True
    ) -> None:
        assert settings.nats_servers, "messaging needs NATS_URL"
        assert verifier is not None or not commands, "answering commands needs a verifier of tokens"
        self.deals = deals
        self.settings = settings
        self.verifier = verifier
        self.with_relay = relay
        self.with_commands = commands
        self.stop_event = asyncio.Event()
        self.listening = asyncio.Event()  # set once commands over NATS are answered
        self._task: asyncio.Task[None] | None = None

    async def start(self, wait_seconds: float = 5.0) -> None:
        """Start, and wait a little for the command responder, so that once the service says it has
        started, a command sent over NATS finds a responder. NATS being down never holds the service
        back: after `wait_seconds` it goes on and the responder joins when NATS answers."""
        self._task = asyncio.create_task(self._run(), name="dealflow-messaging")
        self._task.add_done_callback(_say_if_failed)
        if self.with_commands:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.listening.wait(), wait_seconds)

    async def stop(self) -> None:
        self.stop_event.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)

    async def run_until_stopped(self) -> None:
        await self._run()

    async def _run(self) -> None:
        relay: EventRelay | None = None

        async def reconnected() -> None:
            if relay is not None:
                relay.retry_now()

        nc = await connect(
            self.settings.nats_servers, name="dealflow-deal-lifecycle", credentials=self.settings.nats_credentials, on_reconnect=reconnected
        )
        log.info("connected to NATS", servers=shown(self.settings.nats_servers))
        tasks: list[asyncio.Task[None]] = []
        # Events this process stores wake the leading relay wherever it runs (a worker, `dealflow relay`).
        wake_others = WakeOthers(nc, asyncio.get_running_loop())
        self.deals.on_recorded(wake_others.stored)
        try:
            if self.with_commands:
                assert self.verifier is not None
                await CommandResponder(self.deals, nc, self.verifier, self.settings.max_request_bytes).listen()
                self.listening.set()
            if self.with_relay:
                relay = events = EventRelay(
                    self.deals, nc, batch_size=self.settings.relay_batch_size, poll_seconds=self.settings.relay_poll_seconds
                )
                self.deals.on_recorded(events.wake)

                async def woken(_: object) -> None:
                    events.wake()

                await nc.subscribe(RELAY_WAKE_SUBJECT, cb=woken)
                leadership = self._leadership()
                tasks.append(self._supervised("relay", lambda: events.run(self.stop_event, leadership)))
                if self.settings.database_url:
                    tasks.append(self._supervised("postgres listener", lambda: self._listen_to_postgres(events.wake)))
                # Beside the relay: the store-wide chain's head, anchored on JetStream (checkpoints.py).
                checkpoints = CheckpointPublisher(self.deals.recorder, nc, CheckpointSettings.from_env(self.settings))
                self.deals.on_recorded(checkpoints.wake)
                tasks.append(self._supervised("checkpoints", lambda: checkpoints.run(self.stop_event)))
            # More parts on this connection go here, each under self._supervised(...).
            await self.stop_event.wait()
        finally:
            self.deals.remove_recorded_listener(wake_others.stored)
            # Each part sees the stop and ends on its own (the relay records that it stopped); then what is left is cancelled.
            if tasks:
                await asyncio.wait(tasks, timeout=2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await nc.drain()

    def _supervised(self, part: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run a part until the service stops; if it dies, log why and start it again, with back-off."""

        async def supervise() -> None:
            failures = 0
            loop = asyncio.get_running_loop()
            while not self.stop_event.is_set():
                started = loop.time()
                try:
                    await run()
                except Exception as e:  # noqa: BLE001 - whatever killed it, say so and restart it
                    failures = 1 if loop.time() - started > RESTART_RESET_SECONDS else failures + 1
                    delay = min(RESTART_MAX_SECONDS, 0.5 * 2 ** (failures - 1))
                    log.error(f"{part} died; restarting it", part=part, error=f"{type(e).__name__}: {e}", restart_in_seconds=delay, failures=failures, exc_info=True)
                else:
                    if self.stop_event.is_set():
                        return
                    delay = RESTART_MAX_SECONDS
                    log.error(f"{part} ended unexpectedly; restarting it", part=part, restart_in_seconds=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), timeout=delay)

        return asyncio.create_task(supervise(), name=f"dealflow-{part}")

    def _leadership(self) -> Leadership:
        return leadership_for(self.settings, self.deals, "relay")

    async def _listen_to_postgres(self, wake: object) -> None:
        """Events stored by other processes wake this relay at once (PostgreSQL LISTEN/NOTIFY)."""
        channel = self.deals.recorder.channel_name  # type: ignore[attr-defined]
        while not self.stop_event.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo(self.settings.database_url or ""), autocommit=True
                ) as conn:
                    await conn.execute(f'LISTEN "{channel}"')
                    async for _ in conn.notifies():
                        wake()  # type: ignore[operator]
            except psycopg.Error as e:
                log.warning("cannot listen to PostgreSQL notifications", error=str(e))
                await asyncio.sleep(1)


class WakeOthers:
    """After this process stores events, one `deals.relay.wake` on NATS (not one per command: while one
    is on its way, more stored events ride on it). Only a hint: the relay still polls, so a wake lost
    while NATS is away costs a poll's wait, never an event."""

    def __init__(self, nc: object, loop: asyncio.AbstractEventLoop) -> None:
        self.nc = nc
        self.loop = loop
        self._lock = threading.Lock()
        self._due = False
        self._sending: set[asyncio.Task[None]] = set()  # held until done (the loop keeps only weak references)

    def stored(self) -> None:
        """From the thread that stored the events."""
        with self._lock:
            if self._due:
                return
            self._due = True
        with contextlib.suppress(RuntimeError):  # the loop has closed: the process is stopping
            self.loop.call_soon_threadsafe(self._send)

    def _send(self) -> None:
        task = self.loop.create_task(self._publish())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self) -> None:
        with self._lock:
            self._due = False
        with contextlib.suppress(Exception):  # NATS away: the relay's poll finds the events
            await self.nc.publish(RELAY_WAKE_SUBJECT, b"")  # type: ignore[attr-defined]


def _say_if_failed(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the service's NATS side stopped", error=repr(task.exception()), exc_info=task.exception())

