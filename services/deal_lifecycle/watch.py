"""`dealflow watch`: the lifecycle stream, live, for people (one line per event) or for pipes (--json)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from .bus import EVENTS_STREAM, event_subject
from .terminal import printable

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def start_from(since: str | None, now: datetime) -> tuple[DeliverPolicy, datetime | None]:
    """`None`: new events only; `all`: from the beginning; `15m`/`2h`/`1d`: that long ago; an ISO time."""
    if since is None:
        return DeliverPolicy.NEW, None
    if since == "all":
        return DeliverPolicy.ALL, None
    if match := _DURATION.match(since):
        return DeliverPolicy.BY_START_TIME, now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise ValueError(f"--since must be 'all', a duration such as 15m, 2h or 1d, or an ISO time, not {since!r}") from None
    return DeliverPolicy.BY_START_TIME, moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def line(event: dict[str, Any]) -> str:
    """One event as one line: whatever the event holds, it cannot start another line or drive the terminal."""
    data = ", ".join(f"{k}={v}" for k, v in event["data"].items() if v not in (None, "", [], {}))
    return printable(
        f"{event['timestamp'][:19]}Z  {event['deal_id'][:8]}  v{event['version']:<4} "
        f"{event['type']:<28} by {event['actor']}" + (f"  {data}" if data else "")
    )


async def watch(
    servers: list[str],
    *,
    deal: str | None,
    event_type: str | None,
    since: str | None,
    as_json: bool,
    limit: int | None,
    write: Callable[[str], None],
) -> None:
    policy, start_time = start_from(since, datetime.now(UTC))
    nc = await nats.connect(servers, name="dealflow-watch")
    try:
        js = nc.jetstream()
        subscription = await js.subscribe(
            event_subject(deal or "*", event_type or "*"),
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=policy,
            config=ConsumerConfig(opt_start_time=start_time) if start_time else None,
        )
        seen = 0
        async for msg in subscription.messages:
            event = json.loads(msg.data)
            write(json.dumps(event) if as_json else line(event))
            seen += 1
            if limit is not None and seen >= limit:
                break
    finally:
        await nc.close()
