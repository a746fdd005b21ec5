"""Routes for auditors and ops: verify a deal's hash chain, and the lifecycle live over Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ..application import DealService
from ..audit import Audit
from ..domain.errors import InvalidCommand, NotFound
from ..live import follow, sse_data


@get("/deals/{deal_id:uuid}/verify", tags=["audit"], sync_to_thread=True, summary="Recompute the deal's hash chain")
def verify_deal(deals: NamedDependency[DealService], deal_id: FromPath[UUID]) -> dict[str, Any]:
    verdict = Audit(deals).verify(deal_id)
    if verdict.events == 0 and verdict.intact:
        raise NotFound(f"no deal {deal_id}")
    return verdict.as_dict()


@get("/stream", tags=["audit"], summary="Lifecycle events, live (Server-Sent Events), resumable with Last-Event-ID")
async def stream(
    request: Request[Any, Any, Any],
    deals: NamedDependency[DealService],
    deal: Annotated[str | None, QueryParameter(description="Only this deal's events")] = None,
    event_type: Annotated[str | None, QueryParameter(name="type", description="Only this event type")] = None,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID", description="Resume after this event")] = None,
) -> ServerSentEvent:
    after = None
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise InvalidCommand("Last-Event-ID", "must be the id of an event this stream sent")
        after = int(last_event_id)

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        async for item in follow(deals, after=after, deal_id=deal, event_type=event_type):
            if item is None:
                yield ServerSentEventMessage(comment="keep-alive")
            else:
                position, view = item
                yield ServerSentEventMessage(data=sse_data(view), event=view["type"], id=position)

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
