"""Connecting to NATS the way every dealflow process does: retried until NATS answers, one line per outage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import nats
import structlog
from nats.aio.client import Client as NATS
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

log = structlog.get_logger("dealflow.nats")


async def connect(
    servers: list[str],
    *,
    name: str,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> NATS:
    """Connect, retrying until NATS answers: the service starts (and accepts commands) without it."""

    # nats-py reports every failed reconnect (every 0.5 s while NATS is away): one line per outage is enough.
    outage = False
    client = NATS()

    async def disconnected() -> None:
        nonlocal outage
        if client.is_closed:
            return  # our own close, at shutdown: nothing went wrong
        if not outage:
            log.warning("nats disconnected", servers=servers)
        outage = True

    async def reconnected() -> None:
        nonlocal outage
        outage = False
        log.info("nats reconnected", servers=servers)
        if on_reconnect is not None:
            await on_reconnect()

    async def error(e: Exception) -> None:
        if not outage:
            log.warning("nats error", error=str(e))

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((OSError, asyncio.TimeoutError, nats.errors.NoServersError)),
        wait=wait_random_exponential(multiplier=0.2, max=5),
    ):
        with attempt:
            client = NATS()
            await client.connect(
                servers,
                name=name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
            return client
    raise AssertionError("unreachable: AsyncRetrying retries forever")
