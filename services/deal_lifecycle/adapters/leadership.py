"""Who leads: one process at a time per store for each part that must run once, so no event is
published twice or skipped (the relay), and no deadline is looked for twice (the scheduler).

SQLite: an OS file lock beside the database (released by the OS if the process dies).
PostgreSQL: a session advisory lock (released by the server if the session ends).
Both are also how the other processes notice they can take over.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Protocol

import psycopg
import structlog
from filelock import FileLock, Timeout

log = structlog.get_logger("dealflow.leadership")


class Leadership(Protocol):
    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this process leads (True), or until stop is set (False)."""

    async def still_leading(self) -> bool: ...

    async def release(self) -> None: ...


class FileLeadership:
    def __init__(self, database: Path, retry_seconds: float = 1.0, *, part: str = "relay") -> None:
        self.lock = FileLock(f"{database}.{part}.lock", thread_local=False)
        self.retry_seconds = retry_seconds
        self.part = part

    async def acquire(self, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            try:
                self.lock.acquire(timeout=0)
                return True
            except Timeout:
                log.info("another process leads; standing by", part=self.part, lock=self.lock.lock_file)
                await _pause(stop, self.retry_seconds)
        return False

    async def still_leading(self) -> bool:
        return self.lock.is_locked

    async def release(self) -> None:
        if self.lock.is_locked:
            self.lock.release()


class PostgresLeadership:
    def __init__(self, conninfo: str, scope: str, retry_seconds: float = 1.0, *, part: str = "relay") -> None:
        self.conninfo = conninfo
        # Advisory locks are keyed by a 64-bit number: derive it from the part and the store's identity.
        self.key = int.from_bytes(hashlib.sha256(f"dealflow-{part}:{scope}".encode()).digest()[:8], "big", signed=True)
        self.retry_seconds = retry_seconds
        self.part = part
        self.conn: psycopg.AsyncConnection | None = None

    async def acquire(self, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                cursor = await self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                row = await cursor.fetchone()
                if row and row[0]:
                    return True
                log.info("another process leads; standing by", part=self.part)
            except psycopg.Error as e:
                log.warning("cannot reach PostgreSQL for leadership", part=self.part, error=str(e))
                await self.release()
            await _pause(stop, self.retry_seconds)
        return False

    async def still_leading(self) -> bool:
        if self.conn is None or self.conn.closed:
            return False
        try:
            await self.conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    async def release(self) -> None:
        if self.conn is not None:
            await self.conn.close()  # ending the session releases the advisory lock
            self.conn = None


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
