"""The lifecycle, live, from the store's notification log: for `GET /stream` (Server-Sent Events).

Each message's id is the event's position in the log, so a client that reconnects with
`Last-Event-ID` gets every event after it, once, and misses nothing. No NATS needed.

One follower per process reads the log, woken by this process's writes and by one shared
poll for other processes' writes, and hands each event to every connected stream: an idle
stream costs a queue and a keep-alive timer, not a poll of the database. A stream that
starts behind (Last-Event-ID), or falls too far behind, reads the log itself until it has
caught up, then joins the follower again.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import structlog

from dealflow.deal_lifecycle.adapters.bus import PUBLISHED_TOPICS
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import EventView, limits_concealed, stream_view
from dealflow.deal_lifecycle.entrypoints.edge import TooManyStreams

log = structlog.get_logger("dealflow.live")

KEEPALIVE_SECONDS = 15.0
# How often the follower looks for other processes' writes (this process's wake it at once).
POLL_SECONDS = 1.0
# Events waiting for one stream; a client slower than this reads the log itself to catch up.
QUEUE_SIZE = 1_000
BATCH = 200

Live = tuple[int, EventView]
_CLOSED, _BEHIND = "closed", "behind"


class _Subscriber:
    def __init__(self, live_from: int) -> None:
        # Every event after this position reaches the queue.
        self.live_from = live_from
        self.queue: asyncio.Queue[Live | str] = asyncio.Queue(QUEUE_SIZE)

    def offer(self, item: Live | str) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Too slow to keep up: drop what waits and let the stream catch up from the log.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_BEHIND)


class _Slot:
    """One of the process's `max_streams`, held from the request until its stream ends."""

    def __init__(self, streams: Streams) -> None:
        self._streams: Streams | None = streams

    def release(self) -> None:
        if self._streams is not None:
            self._streams._open -= 1  # noqa: SLF001 - the slot is the Streams' own bookkeeping
            self._streams = None


class Streams:
    """The process's live streams: the cap on how many, and the one follower of the log that feeds them."""

    def __init__(
        self,
        deals: DealService,
        *,
        max_streams: int = 100,
        poll_seconds: float = POLL_SECONDS,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.deals = deals
        self.max_streams = max_streams
        self.poll_seconds = poll_seconds
        self.keepalive_seconds = keepalive_seconds
        self._open = 0
        self._subscribers: set[_Subscriber] = set()
        self._position = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def open_streams(self) -> int:
        return self._open

    def reserve(self) -> _Slot:
        """A place for one more stream, or TooManyStreams (before any response is sent)."""
        if self._closed:
            raise TooManyStreams("the service is shutting down; reconnect to another instance or later")
        if self._open >= self.max_streams:
            raise TooManyStreams(
                f"this instance already serves {self.max_streams} streams (DEALFLOW_MAX_STREAMS); retry later"
            )
        self._open += 1
        return _Slot(self)

    async def last_position(self) -> int:
        return await asyncio.to_thread(self.deals.recorder.max_notification_id) or 0

    def follow(
        self, slot: _Slot, *, after: int | None, deal_id: str | None = None, event_type: str | None = None, limits: bool
    ) -> AsyncIterator[Live | None]:
        """(position, event) for each matching event after `after` (None: from now on), then live;
        private limits shown only where `limits` (the follower reads every event whole, for all streams).

        Yields None when idle for `keepalive_seconds`, so the caller can send a keep-alive.
        The slot is released when the stream ends, or when it is dropped without ever starting.
        """
        stream = self._shown(self._follow(slot, after, deal_id, event_type), limits=limits)
        weakref.finalize(stream, slot.release)
        return stream

    async def close(self) -> None:
        """End every stream now (shutdown): clients see the stream end and reconnect elsewhere or later."""
        self._closed = True
        for subscriber in list(self._subscribers):
            subscriber.offer(_CLOSED)
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._loop is not None:
            with suppress(ValueError):
                self.deals.remove_recorded_listener(self._woken)

    # -- one stream ----------------------------------------------------------------------

    @staticmethod
    async def _shown(stream: AsyncIterator[Live | None], *, limits: bool) -> AsyncIterator[Live | None]:
        try:
            async for item in stream:
                yield item if item is None or limits else (item[0], limits_concealed(item[1]))
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def _follow(
        self, slot: _Slot, after: int | None, deal_id: str | None, event_type: str | None
    ) -> AsyncIterator[Live | None]:
        def wanted(view: EventView) -> bool:
            return (deal_id is None or view["deal_id"] == deal_id) and (event_type is None or view["type"] == event_type)

        position = after
        try:
            while not self._closed:
                subscriber = await self._subscribe()
                try:
                    if position is None:
                        position = subscriber.live_from
                    async for item in self._read_log(position, subscriber.live_from):
                        position = item[0]
                        if wanted(item[1]):
                            yield item
                    position = max(position, subscriber.live_from)
                    while True:
                        try:
                            item = await asyncio.wait_for(subscriber.queue.get(), self.keepalive_seconds)
                        except TimeoutError:
                            yield None
                            continue
                        if item == _CLOSED:
                            return
                        if item == _BEHIND:
                            break  # catch up from the log, then join again
                        assert isinstance(item, tuple)
                        if item[0] > position:
                            position = item[0]
                            if wanted(item[1]):
                                yield item
                finally:
                    self._subscribers.discard(subscriber)
        finally:
            slot.release()

    async def _read_log(self, after: int, up_to: int) -> AsyncIterator[Live]:
        position = after
        while position < up_to:
            notifications = await asyncio.to_thread(
                self.deals.recorder.select_notifications,
                start=position,
                limit=BATCH,
                stop=up_to,
                topics=PUBLISHED_TOPICS,
                inclusive_of_start=False,
            )
            if not notifications:
                return
            for notification in notifications:
                position = notification.id
                yield position, stream_view(self.deals.mapper.to_domain_event(notification), limits=True)

    # -- the follower ----------------------------------------------------------------------

    async def _subscribe(self) -> _Subscriber:
        async with self._lock:
            if self._task is None and not self._closed:
                if self._loop is None:
                    self._loop = asyncio.get_running_loop()
                    self.deals.on_recorded(self._woken)
                self._position = await self.last_position()
            subscriber = _Subscriber(self._position)
            # No await between joining and starting: the follower never stops with a subscriber waiting,
            # and close() either sees this subscriber or ran before the check below.
            self._subscribers.add(subscriber)
            if self._closed:
                # Shutdown began while this stream was joining: it ends at once instead of waiting
                # for events (and keeping the HTTP server from stopping) for ever.
                subscriber.offer(_CLOSED)
            elif self._task is None:
                self._task = asyncio.create_task(self._run(), name="dealflow-stream-follower")
            return subscriber

    def _woken(self) -> None:
        # Called from the writing thread; the loop may be gone at shutdown.
        if self._loop is not None:
            with suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        try:
            while self._subscribers:
                self._wake.clear()
                notifications = await asyncio.to_thread(
                    self.deals.recorder.select_notifications,
                    start=self._position,
                    limit=BATCH,
                    topics=PUBLISHED_TOPICS,
                    inclusive_of_start=False,
                )
                for notification in notifications:
                    item = (notification.id, stream_view(self.deals.mapper.to_domain_event(notification), limits=True))
                    self._position = notification.id
                    for subscriber in list(self._subscribers):
                        subscriber.offer(item)
                if not notifications:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        except Exception:
            # The streams end (their clients reconnect with Last-Event-ID); the next one starts a new follower.
            log.exception("stream follower failed")
            for subscriber in list(self._subscribers):
                subscriber.offer(_CLOSED)
        finally:
            self._task = None


def sse_data(view: EventView) -> str:
    return json.dumps(view, separators=(",", ":"))


def parse_last_event_id(value: Any) -> int | None:
    """The position a stream resumes after, if `value` is one (ASCII digits, at most 19 of them)."""
    text = str(value).strip()
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    return int(text)
