"""Connecting to NATS the way every dealflow process does: with its credentials, retried until NATS
answers, one line per outage, and never a secret in a log line."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import structlog
from nats.aio.client import Client as NATS
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

log = structlog.get_logger("dealflow.nats")


@dataclass(frozen=True)
class Credentials:
    """How a process proves who it is to NATS: a creds file (NATS_CREDS), an nkey seed (NATS_NKEY_SEED:
    the seed itself, `SU...`, or the path of a file holding it), or the user and password in NATS_URL."""

    creds_file: str | None = None
    nkey_seed: str | None = None
    # Where this process's replies arrive (NATS_INBOX_PREFIX): a user allowed to subscribe only to
    # its own prefix can read no one else's replies. Unset: nats-py's `_INBOX`.
    inbox_prefix: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Credentials:
        return cls(
            creds_file=environ.get("NATS_CREDS") or None,
            nkey_seed=environ.get("NATS_NKEY_SEED") or None,
            inbox_prefix=environ.get("NATS_INBOX_PREFIX") or None,
        )

    @classmethod
    def seed_file(cls, path: Path, inbox_prefix: str | None = None) -> Credentials:
        return cls(nkey_seed=str(path), inbox_prefix=inbox_prefix)

    def options(self) -> dict[str, Any]:
        """The nats-py connect() arguments (user and password travel in the URL itself)."""
        options: dict[str, Any] = {} if self.inbox_prefix is None else {"inbox_prefix": self.inbox_prefix}
        if self.creds_file:
            return {**options, "user_credentials": self.creds_file}
        if self.nkey_seed:
            seed = self.nkey_seed.strip()
            return {**options, **({"nkeys_seed_str": seed} if seed.startswith("SU") and "/" not in seed else {"nkeys_seed": seed})}
        return options


def shown(servers: list[str]) -> list[str]:
    """Server URLs fit for a log line or a message: a user and password in the URL are never shown."""
    return [_without_userinfo(server) for server in servers]


def _without_userinfo(server: str) -> str:
    url = urlsplit(server if "://" in server else f"nats://{server}")
    if url.username is None and url.password is None:
        return server
    return urlunsplit((url.scheme, f"***@{url.hostname}{f':{url.port}' if url.port else ''}", url.path, "", ""))


async def connect(
    servers: list[str],
    *,
    name: str,
    credentials: Credentials | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> NATS:
    """Connect, retrying until NATS answers: the service starts (and accepts commands) without it."""
    servers_shown = shown(servers)

    # nats-py reports every failed reconnect (every 0.5 s while NATS is away): one line per outage is enough.
    outage = False
    client = NATS()

    async def disconnected() -> None:
        nonlocal outage
        if client.is_closed:
            return  # our own close, at shutdown: nothing went wrong
        if not outage:
            log.warning("nats disconnected", servers=servers_shown)
        outage = True

    async def reconnected() -> None:
        nonlocal outage
        outage = False
        log.info("nats reconnected", servers=servers_shown)
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
                **(credentials or Credentials()).options(),
            )
            return client
    raise AssertionError("unreachable: AsyncRetrying retries forever")
