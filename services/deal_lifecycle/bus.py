"""The deal lifecycle on NATS JetStream: subjects, the events stream, and the message envelope.

Subject scheme (a public contract):
  deals.events.<deal_id>.<EventType>   every stored deal event, in order, once (stream DEALS_EVENTS)
  deals.commands.<command>             commands, request/reply (see nats_commands.py)
  deals.alerts.dead                    alerts and events the notifier dead-lettered (stream DEALS_ALERTS)
  deals.relay.stalled / .resumed       core NATS: the relay stalled at an event it cannot publish / resumed

Each event is a CloudEvent in binary mode (CloudEvents NATS protocol binding): the
attributes travel as `ce-*` headers and the body is the event as JSON, the same shape
as `GET /deals/{id}/events` returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

from .domain import attempts
from .domain.deal import event_topics
from .views import stream_view

log = structlog.get_logger("dealflow.bus")

EVENTS_STREAM = "DEALS_EVENTS"
EVENTS_SUBJECTS = "deals.events.>"
COMMANDS_PREFIX = "deals.commands"
CE_SOURCE = "urn:dealflow:deal-lifecycle"
# Our own headers beside the CloudEvents ones.
DEAL_VERSION = "Dealflow-Deal-Version"
CORRELATION_ID = "Dealflow-Correlation-Id"
SCHEMA = "Dealflow-Schema-Version"
NOTIFICATION_ID = "Dealflow-Notification-Id"
ACTOR = "Dealflow-Actor"
# Header values that copy a body field are cut to this many characters (see header_copy).
HEADER_COPY_MAX = 200
# Core NATS, no stream: the relay's alarm (relay_status.Stall) and its all-clear; the notifier alerts on both.
RELAY_STALLED_SUBJECT = "deals.relay.stalled"
RELAY_RESUMED_SUBJECT = "deals.relay.resumed"
# JetStream drops a second message with the same id within this window: the relay's
# safety net for an event whose acknowledgement was lost.
DUPLICATE_WINDOW_SECONDS = 15 * 60


# Every Deal event, and the refused signing attempts; not the attempts log's own creation.
PUBLISHED_TOPICS = event_topics() + attempts.PUBLISHED_TOPICS


def event_subject(deal_id: str, event_type: str) -> str:
    return f"deals.events.{deal_id}.{event_type}"


@dataclass(frozen=True)
class Envelope:
    subject: str
    headers: dict[str, str]
    body: bytes


def envelope(domain_event: Any, notification_id: int) -> Envelope:
    view = stream_view(domain_event)
    # Unique per stored event: its originator (the deal, or the deal's log of refused signings) and version.
    event_id = f"{domain_event.originator_id}:{domain_event.originator_version}"
    headers = {
        "Nats-Msg-Id": event_id,
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": CE_SOURCE,
        "ce-type": f"dealflow.deal.{view['type']}",
        "ce-subject": view["deal_id"],
        "ce-time": view["timestamp"],
        "ce-datacontenttype": "application/json",
        "Content-Type": "application/json",
        DEAL_VERSION: str(view["version"]),
        CORRELATION_ID: header_copy(view["correlation_id"]),
        ACTOR: header_copy(view["actor"]),
        # The version of this event type's schema (schemas/events/<type>.v<N>.json).
        SCHEMA: str(getattr(type(domain_event), "class_version", 1)),
        NOTIFICATION_ID: str(notification_id),
    }
    body = json.dumps(view, separators=(",", ":")).encode()
    return Envelope(event_subject(view["deal_id"], view["type"]), headers, body)


def header_copy(value: str) -> str:
    """A body field's copy in a header, at most HEADER_COPY_MAX characters: a longer value keeps a
    prefix and `…sha256:<hex>` of the whole value (which the body carries in full).

    The edge bounds these values now, but events stored before it did are published too, and
    headers over JetStream's 64 KB would stall the relay at such an event for good."""
    if len(value) <= HEADER_COPY_MAX:
        return value
    suffix = "…sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return value[: HEADER_COPY_MAX - len(suffix)] + suffix


def events_stream_config() -> StreamConfig:
    return StreamConfig(
        name=EVENTS_STREAM,
        subjects=[EVENTS_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


async def ensure_streams(js: JetStreamContext) -> None:
    """Create the streams, or bring an existing one's config up to date; safe to run at every start."""
    config = events_stream_config()
    try:
        await js.stream_info(config.name or EVENTS_STREAM)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


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
