"""`dealflow watch`: the lifecycle stream, live, for people (one line per event) or for pipes (--json)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import nats.errors
from nats.js.api import ConsumerConfig, DeliverPolicy

from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM, event_subject
from dealflow.nats_connection import Credentials, shown
from dealflow.terminal import printable, value_text

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
    """One event as one line: whatever the event holds, it cannot start another line or drive the terminal.
    Values read as JSON (`null`, `false`, `{"term": ...}`, `60`), as in the other views."""
    data = ", ".join(f"{k}={value_text(v)}" for k, v in event["data"].items() if v not in (None, "", [], {}))
    # A refused signing is read beside the deal's events at the version it was judged at; its place in its own log is `attempt`.
    attempt = f"  attempt {event['attempt']}" if "attempt" in event else ""
    by = event["actor"] + (f" for {event['on_behalf_of']}" if event.get("on_behalf_of") else "")
    return printable(
        f"{event['timestamp'][:19]}Z  {event['deal_id'][:8]}  v{event['version']:<4} "
        f"{event['type']:<28} by {by}{attempt}" + (f"  {data}" if data else "")
    )


async def _quiet(*_: Any) -> None:
    """nats-py's default callbacks log a traceback per failed attempt; watch says one line itself."""


class ReaderGone(Exception):
    """The reader of watch's output went away (a closed pipe): stop, quietly."""


class WatchRefused(Exception):
    """NATS will not let this watcher in: say so and stop (retrying cannot help)."""


async def watch(
    servers: list[str] | Callable[[], list[str]],
    *,
    deal: str | None,
    event_type: str | None,
    since: str | None,
    as_json: bool,
    limit: int | None,
    write: Callable[[str], None],
    warn: Callable[[str], None] = lambda text: None,
    retry_seconds: float = 1.0,
    credentials: Credentials | None = None,
    reader_gone: Callable[[], bool] = lambda: False,
) -> None:
    """Tail the stream; when NATS goes away, say so once, reconnect and carry on after the last event shown.

    `servers` may be a function: it is asked again on every attempt, so a NATS restarted on a new
    address (`dealflow up` writes it to var/nats.url) is found."""
    policy, start_time = start_from(since, datetime.now(UTC))
    resolve = servers if callable(servers) else (lambda: servers)
    next_sequence: int | None = None  # the stream sequence after the last event shown
    seen = 0
    outage = False
    while True:
        urls = resolve()
        if not urls:
            if not outage:
                warn("dealflow watch: no NATS to watch: `dealflow up` is not running here (no var/nats.url) and NATS_URL "
                     "is not set; waiting for it")
            outage = True
            await asyncio.sleep(retry_seconds)
            continue
        try:
            nc = await nats.connect(
                urls, name="dealflow-watch", allow_reconnect=False, connect_timeout=2,
                error_cb=_quiet, disconnected_cb=_quiet, closed_cb=_quiet, **(credentials or Credentials()).options(),
            )
        except nats.errors.Error as refused:
            if "authorization" not in str(refused).lower():
                raise
            # Not an outage: waiting would not help.
            raise WatchRefused(f"NATS at {', '.join(shown(urls))} refused this watcher's credentials (NATS_CREDS, NATS_NKEY_SEED)") from None
        except (OSError, TimeoutError, nats.errors.NoServersError):
            if not outage:
                warn(f"dealflow watch: NATS at {printable(', '.join(shown(urls)))} is not answering; retrying until it is back")
            outage = True
            await asyncio.sleep(retry_seconds)
            continue
        try:
            js = nc.jetstream()
            if next_sequence is not None:
                policy, config = DeliverPolicy.BY_START_SEQUENCE, ConsumerConfig(opt_start_seq=next_sequence)
            else:
                config = ConsumerConfig(opt_start_time=start_time) if start_time else None
            subscription = await js.subscribe(
                event_subject(deal or "*", event_type or "*"),
                stream=EVENTS_STREAM,
                ordered_consumer=True,
                deliver_policy=policy,
                config=config,
            )
            if outage:
                warn(f"dealflow watch: reconnected to {printable(', '.join(shown(urls)))}")
                outage = False
            elif seen == 0:
                warn(f"dealflow watch: following the lifecycle on {printable(', '.join(shown(urls)))}; Ctrl-C to stop")
            while not nc.is_closed:
                try:
                    msg = await subscription.next_msg(timeout=retry_seconds)
                except TimeoutError:
                    if reader_gone():  # `watch | head`: the reader left while nothing was happening
                        raise ReaderGone from None
                    continue
                event = json.loads(msg.data)
                try:
                    write(json.dumps(event) if as_json else line(event))
                except BrokenPipeError:
                    # Whoever read our output (`| head`, `| jq` ...) has gone: we are done, NATS is fine.
                    raise ReaderGone from None
                next_sequence = msg.metadata.sequence.stream + 1
                seen += 1
                if limit is not None and seen >= limit:
                    return
        except (OSError, TimeoutError, nats.errors.Error):
            pass  # the connection went away mid-way: reconnect below
        finally:
            await nc.close()
        if not outage:
            warn(f"dealflow watch: lost NATS at {printable(', '.join(shown(urls)))}; reconnecting, events resume after the last one shown")
        outage = True
        await asyncio.sleep(retry_seconds)
