"""The lifecycle, live, from the store's notification log: for `GET /stream` (Server-Sent Events).

Each message's id is the event's position in the log, so a client that reconnects with
`Last-Event-ID` gets every event after it, once, and misses nothing. No NATS needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from .application import DealService
from .bus import PUBLISHED_TOPICS
from .views import EventView, event_view

KEEPALIVE_SECONDS = 15.0


async def follow(
    deals: DealService,
    *,
    after: int | None,
    deal_id: str | None = None,
    event_type: str | None = None,
    poll_seconds: float = 1.0,
) -> AsyncIterator[tuple[int, EventView] | None]:
    """(position, event) for each matching event after `after` (None: from now on), then live.

    Yields None now and then while idle, so the caller can send a keep-alive.
    """
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(woken.set)

    deals.on_recorded(wake)
    try:
        position = after if after is not None else (await asyncio.to_thread(deals.recorder.max_notification_id) or 0)
        idle = 0.0
        while True:
            woken.clear()
            notifications = await asyncio.to_thread(
                deals.recorder.select_notifications,
                start=position,
                limit=200,
                topics=PUBLISHED_TOPICS,
                inclusive_of_start=False,
            )
            for notification in notifications:
                position = notification.id
                view = event_view(deals.mapper.to_domain_event(notification))
                if (deal_id is None or view["deal_id"] == deal_id) and (event_type is None or view["type"] == event_type):
                    yield position, view
            if notifications:
                idle = 0.0
                continue
            try:
                await asyncio.wait_for(woken.wait(), timeout=poll_seconds)  # other processes' writes: the poll
            except TimeoutError:
                idle += poll_seconds
                if idle >= KEEPALIVE_SECONDS:
                    idle = 0.0
                    yield None
    finally:
        deals.remove_recorded_listener(wake)


def sse_data(view: EventView) -> str:
    return json.dumps(view, separators=(",", ":"))
