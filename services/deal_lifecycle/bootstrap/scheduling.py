"""Who leads each part that runs once per store, and the scheduler beside the HTTP app.

The relay and the scheduler are elected the same way (adapters/leadership.py): a file lock beside
the SQLite file, or a PostgreSQL advisory lock keyed by the part and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from dealflow.deal_lifecycle.adapters.leadership import FileLeadership, Leadership, PostgresLeadership
from dealflow.deal_lifecycle.application.scheduler import Scheduler
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.config import Settings


def leadership_for(settings: Settings, deals: DealService, part: str) -> Leadership:
    """How this process competes to run `part` ("relay", "scheduler") on the configured store."""
    if settings.database_url:
        scope = f"{settings.database_url}:{deals.recorder.events_table_name}"  # type: ignore[attr-defined]
        return PostgresLeadership(conninfo(settings.database_url), scope=scope, part=part)
    return FileLeadership(settings.sqlite_path, part=part)


def conninfo(database_url: str) -> str:
    """The URL psycopg accepts: ours carries `?schema=`, which is not a libpq parameter."""
    url = urlsplit(database_url)
    return urlunsplit((url.scheme, url.netloc, url.path, "", ""))


@asynccontextmanager
async def scheduling(deals: DealService, settings: Settings) -> AsyncIterator[Scheduler]:
    """The scheduler, leading or standing by, for as long as the context lasts."""
    scheduler = Scheduler(deals)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop, leadership_for(settings, deals, "scheduler")), name="dealflow-scheduler")
    try:
        yield scheduler
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(task, timeout=10)
