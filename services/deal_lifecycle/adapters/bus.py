"""The deal lifecycle on NATS JetStream: the events stream, and the message envelope.

The subjects, streams and header names are the contract in dealflow.nats_contract.

Each event is a CloudEvent in binary mode (CloudEvents NATS protocol binding): the
attributes travel as `ce-*` headers and the body is the event as JSON, the same shape
as `GET /deals/{id}/events` returns.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from dealflow.deal_lifecycle.application.views import stream_view
from dealflow.deal_lifecycle.domain import attempts
from dealflow.deal_lifecycle.domain.deal import event_topics
from dealflow.nats_connection import connect
from dealflow.nats_contract import (
    ALERTS_STREAM,
    ALERTS_SUBJECTS,
    ACTOR,
    CE_SOURCE,
    COMMANDS_PREFIX,
    CORRELATION_ID,
    DEAL_VERSION,
    DUPLICATE_WINDOW_SECONDS,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    NOTIFICATION_ID,
    RELAY_RESUMED_SUBJECT,
    RELAY_STALLED_SUBJECT,
    RELAY_WAKE_SUBJECT,
    SCHEMA,
    event_subject,
)

log = structlog.get_logger("dealflow.bus")

__all__ = [  # the contract's names, used from here by the deal service's own modules
    "ACTOR", "CE_SOURCE", "COMMANDS_PREFIX", "CORRELATION_ID", "DEAL_VERSION", "DUPLICATE_WINDOW_SECONDS", "EVENTS_STREAM",
    "EVENTS_SUBJECTS", "NOTIFICATION_ID", "RELAY_RESUMED_SUBJECT", "RELAY_STALLED_SUBJECT", "RELAY_WAKE_SUBJECT", "SCHEMA", "connect", "event_subject",
]

# Header values that copy a body field are cut to this many characters (see header_copy).
HEADER_COPY_MAX = 200


# Every Deal event, and the refused signing attempts; not the attempts log's own creation.
PUBLISHED_TOPICS = event_topics() + attempts.PUBLISHED_TOPICS


@dataclass(frozen=True)
class Envelope:
    subject: str
    headers: dict[str, str]
    body: bytes


def envelope(domain_event: Any, notification_id: int) -> Envelope:
    view = stream_view(domain_event, limits=True)  # NATS is internal: the events whole (README: Identity)
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


def alerts_stream_config() -> StreamConfig:
    """The notifier's dead letters (deals.alerts.>): kept by the deal service, so the notifier needs no right to make a stream."""
    return StreamConfig(name=ALERTS_STREAM, subjects=[ALERTS_SUBJECTS], storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_SECONDS)


async def ensure_streams(js: JetStreamContext) -> None:
    """Create the streams, or bring an existing one's config up to date; safe to run at every start."""
    for config in (events_stream_config(), alerts_stream_config()):
        try:
            await js.stream_info(config.name or EVENTS_STREAM)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
