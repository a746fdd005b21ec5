"""The event loop a long-running process runs on (`dealflow notifier`, `dealflow relay`), and waiting
on the first of several things (a stop, a wake-up, a timeout), as the relay and the scheduler do.

uvloop where it is installed (it comes with uvicorn[standard], and `dealflow serve` already runs on
it through uvicorn): a faster loop for processes that spend their time on sockets, NATS and
webhooks. asyncio's own where it is not (uvloop does not build on Windows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def first_of(*waits: Coroutine[Any, Any, Any], timeout: float) -> None:
    """Until the first of `waits` is done, or `timeout` seconds; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
