"""The event loop a long-running process runs on (`dealflow notifier`, `dealflow relay`).

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
