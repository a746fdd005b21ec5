"""The relay: every stored event reaches JetStream, in order, exactly once in effect.

The event store is the outbox. The relay follows the application's notification log
from its tracked position and publishes each event (bus.envelope) with its id as
`Nats-Msg-Id`. The position is saved only after JetStream acknowledged, so a crash
republishes at most the unacknowledged tail, which the stream's duplicate window drops;
and on every (re)start the position is first moved past the last event the stream
already holds, so even a restart after that window publishes nothing twice.

Only one relay publishes at a time (`leadership.py`); the others wait to take over.
It is woken as soon as this process stores events, by PostgreSQL NOTIFY when another
process does, and otherwise looks again every `poll_seconds`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from eventsourcing.persistence import Notification, Tracking
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from .application import DealService
from .bus import EVENTS_STREAM, NOTIFICATION_ID, PUBLISHED_TOPICS, ensure_streams, envelope
from .leadership import Leadership

log = structlog.get_logger("dealflow.relay")

TRACKING_NAME = "deals.events.relay"


class PublishFailed(Exception):
    pass


class EventRelay:
    def __init__(
        self,
        deals: DealService,
        nc: NATS,
        *,
        batch_size: int = 500,
        ack_timeout: float = 5.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.deals = deals
        self.nc = nc
        self.js = nc.jetstream(timeout=ack_timeout)
        self.tracking = deals.factory.tracking_recorder()
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.poll_seconds = poll_seconds
        self.position = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Called from any thread (a command's worker) right after events were stored."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event, leadership: Leadership) -> None:
        """Relay while leading; stand by while another process leads."""
        self._loop = asyncio.get_running_loop()
        while await leadership.acquire(stop):
            try:
                await self._relay(stop, leadership)
            finally:
                await leadership.release()

    async def _relay(self, stop: asyncio.Event, leadership: Leadership) -> None:
        await self._reconcile_when_reachable(stop)
        log.info("relay leading", position=self.position)
        while not stop.is_set():
            if not await leadership.still_leading():
                log.warning("relay lost leadership", position=self.position)
                return
            try:
                published = await self.publish_backlog()
            except PublishFailed as e:
                log.warning("relay waiting for JetStream", error=str(e), position=self.position)
                await _sleep_or(stop, 0.5)
                await self._reconcile_quietly()
                continue
            if not published:
                self._wake.clear()
                await _first_of(stop.wait(), self._wake.wait(), timeout=self.poll_seconds)

    async def publish_backlog(self) -> int:
        """Publish everything stored after the position; returns how many were published."""
        total = 0
        while True:
            notifications = await asyncio.to_thread(
                self.deals.recorder.select_notifications,
                start=self.position,
                limit=self.batch_size,
                topics=PUBLISHED_TOPICS,
                inclusive_of_start=False,
            )
            if not notifications:
                return total
            await self._publish(notifications)
            total += len(notifications)

    async def _publish(self, notifications: Sequence[Notification]) -> None:
        # Pipelined on one connection, so JetStream stores them in this order; the position
        # advances over the acknowledged prefix only.
        acks = []
        for notification in notifications:
            event = self.deals.mapper.to_domain_event(notification)
            message = envelope(event, notification.id)
            acks.append(await self.js.publish_async(message.subject, message.body, headers=message.headers))
        acknowledged = None
        failure: Exception | None = None
        for notification, ack in zip(notifications, acks, strict=True):
            try:
                await asyncio.wait_for(ack, self.ack_timeout)
            except Exception as e:  # noqa: BLE001 - any failure stops the prefix here
                failure = e
                break
            acknowledged = notification.id
        for ack in acks:
            ack.cancel()
        if acknowledged is not None:
            await self._advance(acknowledged)
        if failure is not None:
            raise PublishFailed(f"{type(failure).__name__}: {failure}")

    async def _advance(self, notification_id: int) -> None:
        await asyncio.to_thread(self.tracking.insert_tracking, Tracking(TRACKING_NAME, notification_id))
        self.position = notification_id

    async def _reconcile(self) -> None:
        """Start after both the saved position and the last event the stream already holds."""
        saved = await asyncio.to_thread(self.tracking.max_tracking_id, TRACKING_NAME) or 0
        in_stream = await self._last_in_stream()
        self.position = max(saved, in_stream, self.position)
        if self.position > saved:
            await self._advance(self.position)

    async def _reconcile_quietly(self) -> None:
        try:
            await self._reconcile()
        except Exception as e:  # noqa: BLE001 - NATS may still be down; the next round tries again
            log.debug("relay could not reconcile yet", error=str(e))

    async def _reconcile_when_reachable(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await ensure_streams(self.js)
                await self._reconcile()
                return
            except Exception as e:  # noqa: BLE001 - JetStream not reachable yet: keep the position, try again
                log.warning("relay waiting for JetStream", error=str(e))
                await _sleep_or(stop, 0.5)

    async def _last_in_stream(self) -> int:
        info = await self.js.stream_info(EVENTS_STREAM)
        if not info.state.last_seq:
            return 0
        try:
            last = await self.js.get_msg(EVENTS_STREAM, info.state.last_seq)
        except NotFoundError:
            return 0
        return int((last.headers or {}).get(NOTIFICATION_ID, 0))


async def _sleep_or(stop: asyncio.Event, seconds: float) -> None:
    await _first_of(stop.wait(), timeout=seconds)


async def _first_of(*waits: object, timeout: float) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
