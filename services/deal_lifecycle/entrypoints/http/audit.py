"""Routes for auditors and ops: verify a deal's hash chain, the lifecycle live over Server-Sent Events,
and what the notifier delivered (its store, read through adapters/alert_log.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from litestar import Litestar, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from dealflow.deal_lifecycle.adapters.alert_log import MAX_LIMIT, AlertLog, AlertsView
from dealflow.deal_lifecycle.application.access import Caller
from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.domain.errors import NotFound
from dealflow.deal_lifecycle.entrypoints.edge import InvalidHeader
from dealflow.deal_lifecycle.entrypoints.http.context import ERROR_RESPONSES, read_route
from dealflow.deal_lifecycle.entrypoints.http.live import Streams, parse_last_event_id, sse_data


@get("/deals/{deal_id:uuid}/verify", tags=["audit"], sync_to_thread=True, summary="Recompute the deal's hash chain", opt=read_route("verify_deal"), responses=ERROR_RESPONSES)
def verify_deal(deals: NamedDependency[DealService], deal_id: FromPath[UUID]) -> dict[str, Any]:
    verdict = Audit(deals).verify(deal_id)
    if verdict.events == 0 and verdict.intact:
        raise NotFound(f"no deal {deal_id}")
    return verdict.as_dict()


@get(
    "/stream",
    tags=["audit"],
    summary="Lifecycle events, live (Server-Sent Events), resumable with Last-Event-ID",
    description="For ops, auditor and admin. At most DEALFLOW_MAX_STREAMS streams per instance (default 100): beyond, 503 `too_many_streams`.",
    opt=read_route("stream"),
    responses=ERROR_RESPONSES,
)
async def stream(
    request: Request[Any, Any, Any],
    deals: NamedDependency[DealService],
    caller: NamedDependency[Caller],
    deal: Annotated[str | None, QueryParameter(description="Only this deal's events", max_length=200)] = None,
    event_type: Annotated[str | None, QueryParameter(name="type", description="Only this event type", max_length=200)] = None,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID", description="Resume after this event")] = None,
) -> ServerSentEvent:
    streams = live_streams(request.app, deals)
    after = None
    if last_event_id is not None:
        after = parse_last_event_id(last_event_id)
        # Beyond the last event stored it cannot be an id this stream sent (and would never resume).
        if after is None or after > await streams.last_position():
            raise InvalidHeader("Last-Event-ID", "must be the id of an event this stream sent")
    slot = streams.reserve()
    events = streams.follow(slot, after=after, deal_id=deal, event_type=event_type, limits=caller.sees_private_limits)

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        # At once, so the client sees the stream open (and its headers) before the first event.
        # A comment only (no data line), which EventSource clients ignore.
        yield ServerSentEventMessage(comment="connected", data=None)
        following = aiter(events)
        while True:
            # A stream lives no longer than the token that opened it: the client reconnects with a
            # fresh one (and Last-Event-ID), and its roles are judged again.
            remaining = None if caller.expires_at is None else caller.expires_at - time.time()
            try:
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                item = await asyncio.wait_for(anext(following), remaining)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield ServerSentEventMessage(comment="token expired: reconnect with a fresh token and Last-Event-ID", data=None)
                return
            if item is None:
                yield ServerSentEventMessage(comment="keep-alive", data=None)
            else:
                position, view = item
                yield ServerSentEventMessage(data=sse_data(view), event=view["type"], id=position)

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def live_streams(app: Litestar, deals: DealService) -> Streams:
    """The process's streams, made on first use unless the app's start-up made them (with its setting)."""
    streams = getattr(app.state, "streams", None)
    if streams is None:
        streams = app.state.streams = Streams(deals)
    return streams


@get(
    "/alerts",
    tags=["audit"],
    sync_to_thread=True,
    summary="What the notifier delivered or dead-lettered, newest first, with each alert's tries (from the notifier's store)",
    description="For ops, auditor and admin. The store is the notifier's (DEALFLOW_NOTIFIER_DB, default var/notifier.sqlite3, "
    "or DEALFLOW_NOTIFIER_DATABASE_URL); where there is none, 404 `alerts_unavailable`. What each alert said is not shown.",
    opt=read_route("alerts"),
    responses=ERROR_RESPONSES,
)
def alerts(
    request: Request[Any, Any, Any],
    deal_id: Annotated[str | None, QueryParameter(description="Only this deal's alerts", max_length=200)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="At most this many alerts (and dead letters)")] = 100,
) -> AlertsView:
    log: AlertLog = request.app.state.alert_log
    return log.recent(deal_id=deal_id, limit=limit)
